"""Reverse-mode automatic differentiation.

``graph`` (the tape: grad mode, nodes, the ``differentiable`` decorator) sits
below the ops, which declare their backward rules with it; ``engine`` (the
backward pass) sits above them. Importing this package imports neither.
"""
