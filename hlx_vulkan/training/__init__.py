"""Training recipes behind ``hlx train``."""
