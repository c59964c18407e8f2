"""Synthetic conversations, listener styles and simulated raters."""
