"""The ``face-expr`` command: one entry point, a subcommand per job."""

from __future__ import annotations

import argparse
import importlib
import sys

from face_expr_ros import __version__

# Subcommand modules under face_expr_ros.commands, in the order --help lists them.
SUBCOMMANDS: tuple[str, ...] = ("doctor", "demo", "track", "render", "data", "train", "rollout", "calibrate", "eval",
                                   "bringup")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="face-expr",
        description="Listener facial expressions for social robots: perception, policy, "
        "learning from ratings, ROS 2 bringup and replay.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"face_expr_ros.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
