"""Control flow that passes spirv-val and that Mesa's SPIR-V parser (lavapipe 22.3) still refuses.

Mesa 22.3 walks each function's structured control flow once, from the entry block, and follows a
branch to a block it has already placed only when the branch is a construct's exit: to a merge block,
a continue target, a loop header (the back edge) or a switch case (fallthrough). Any other block
entered from two places (one arm of an ``if`` branching into the other, say) is a "back or
cross-edge" and the pipeline fails after the driver has printed its complaint. SPIRV-Tools does not
check this, so :func:`cfg_problems` does, on a module that spirv-val has passed.
"""

from __future__ import annotations

from .spirv import _words as module_words  # the header checked, a big-endian module swapped

_OP_FUNCTION, _OP_FUNCTION_END, _OP_CAPABILITY = 54, 56, 17
_OP_LOOP_MERGE, _OP_SELECTION_MERGE, _OP_LABEL = 246, 247, 248
_OP_BRANCH, _OP_BRANCH_CONDITIONAL, _OP_SWITCH = 249, 250, 251
_CAPABILITY_INT64 = 11
_MIN_OPERANDS = {_OP_LOOP_MERGE: 2, _OP_SELECTION_MERGE: 1, _OP_BRANCH: 1, _OP_BRANCH_CONDITIONAL: 3, _OP_SWITCH: 2}


class _Function:
    def __init__(self):
        self.order: list[int] = []           # labels, in the order the blocks appear
        self.succ: dict[int, list[int]] = {}
        self.exits: set[int] = set()         # merge blocks, continue targets, loop headers, switch cases
        self.ambiguous = False               # a switch whose case labels could not be told apart


def _switch_targets(ops, labels: set[int], wide_literals: bool) -> list[int] | None:
    """The default and case labels of an OpSwitch (its literals are 1 word, or 2 for a 64-bit selector)."""
    layouts = [1, 2] if wide_literals else [1]
    found = [[ops[1]] + list(ops[2 + width::width + 1]) for width in layouts if (len(ops) - 2) % (width + 1) == 0]
    found = [t for t in found if all(label in labels for label in t)]
    return found[0] if len(found) == 1 else None


def _functions(words) -> list[_Function]:
    heads = [(i, op) for i, op, count in _instructions(words) if count > 1]
    labels = {words[i + 1] for i, op in heads if op == _OP_LABEL}
    wide = any(op == _OP_CAPABILITY and words[i + 1] == _CAPABILITY_INT64 for i, op in heads)
    functions, fn, block = [], None, None
    for i, op, count in _instructions(words):
        ops = words[i + 1:i + count]
        if op == _OP_FUNCTION:
            fn, block = _Function(), None
            functions.append(fn)
        elif fn is None:
            continue
        elif op == _OP_FUNCTION_END:
            fn = None
        elif op == _OP_LABEL and ops:
            block = ops[0]
            fn.order.append(block)
            fn.succ[block] = []
        elif block is None or len(ops) < _MIN_OPERANDS.get(op, 0):
            continue
        elif op == _OP_LOOP_MERGE:
            fn.exits.update((ops[0], ops[1], block))
        elif op == _OP_SELECTION_MERGE:
            fn.exits.add(ops[0])
        elif op == _OP_BRANCH:
            fn.succ[block] = [ops[0]]
        elif op == _OP_BRANCH_CONDITIONAL:
            fn.succ[block] = [ops[1], ops[2]]
        elif op == _OP_SWITCH:
            targets = _switch_targets(ops, labels, wide)
            if targets is None:
                fn.ambiguous = True
            else:
                fn.succ[block] = targets
                fn.exits.update(targets)
    return functions


def _instructions(words):
    i, n = 5, len(words)
    while i < n:
        count = words[i] >> 16
        if count == 0 or i + count > n:
            return
        yield i, words[i] & 0xFFFF, count
        i += count


def cfg_problems(data) -> list[str]:
    """Blocks entered from two reachable blocks without being a construct's exit (see the module)."""
    problems = []
    for fn in _functions(module_words(data)):
        if fn.ambiguous or not fn.order:
            continue
        reached, todo = {fn.order[0]}, [fn.order[0]]
        while todo:
            for nxt in fn.succ.get(todo.pop(), ()):
                if nxt not in reached:
                    reached.add(nxt)
                    todo.append(nxt)
        preds: dict[int, set[int]] = {}
        for block in fn.order:
            if block in reached:
                for nxt in fn.succ[block]:
                    preds.setdefault(nxt, set()).add(block)
        for block in fn.order:
            entered = sorted(preds.get(block, ()))
            if len(entered) > 1 and block not in fn.exits:
                problems.append(f"block %{block} is entered from %{entered[0]} and %{entered[1]} but is no merge "
                                "block, continue target, loop header or switch case: a cross edge that "
                                "Mesa's SPIR-V parser refuses")
    return problems
