"""Subcommands of the ``face-expr`` command, one module each.

Each module defines ``register(subparsers)``, which adds its parser and sets
``func(args) -> int`` as the default. Modules import heavy libraries inside ``func`` only,
so that ``face-expr --help`` stays fast.
"""
