"""``face-expr doctor``: what this machine offers, and how to fix what is missing."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check what this machine offers (ROS 2, MediaPipe, ASR, ONNX Runtime, TensorRT, devices)",
        description="Print a table of every component the project can use on this machine, with "
        "OK / missing and how to fix it. Components marked * form the embedded default (CPU, "
        "ONNX Runtime, MediaPipe, pocketsphinx); the exit code is 0 when all of them are present.",
    )
    parser.add_argument("--json", action="store_true", help="print the checks as JSON instead")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from face_expr_ros import doctor

    checks = doctor.run_checks()
    ready = doctor.embedded_default_ready(checks)
    if args.json:
        print(json.dumps({"embedded_default_ready": ready, "checks": doctor.as_dicts(checks)}, indent=2))
    else:
        print(doctor.format_table(checks))
        print("\n* required by the embedded default.")
        print("Embedded default: " + ("ready." if ready else "NOT ready: fix the rows marked * above."))
    return 0 if ready else 1
