"""``face-expr demo``: the main job, on the embedded default."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the end-to-end demo on the embedded default and write demo_out/",
        description="Run the demo: everything the project can do today, on the CPU default "
        "(ONNX Runtime, MediaPipe, pocketsphinx). Writes its outputs to --out and prints where "
        "they went, and which parts are not built yet.",
    )
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    parser.add_argument("--seed", type=int, default=3, help="conversation seed (default 3)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the conversation (default 20 s)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from face_expr_ros.demo import run_demo

    report = run_demo(args.out, args.seed, args.seconds)
    for key, value in report.summary.items():
        print(f"{key}: {value}")
    print(f"face-expr demo: wrote {len(report.written)} file(s) to {report.out_dir}/")
    for path in report.written:
        print(f"  {path}")
    if report.not_built:
        print("Not built yet in this version: " + ", ".join(report.not_built) + ".")
    return 0
