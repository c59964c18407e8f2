"""Output mapping from the expression space to robot faces."""
