"""``face-expr rollout``: the policy's own listener tracks over a dataset, to train the next one on."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollout",
        help="play a dataset's conversations through a policy, closed loop, as each one's own listener",
        description="Streams every conversation of a split through the policy (the runtime's default sampling), "
        "as the persona of the conversation's recorded listener, and writes the generated listener tracks to "
        "an .npz file. `face-expr train --rollouts FILE` then shows the network these histories of its own "
        "with the recorded continuations as targets (DAgger-style; docs/policy.md, 'Training on its own "
        "histories').",
    )
    parser.add_argument("--model", required=True, help="policy directory (e.g. RUN/policy)")
    parser.add_argument("--data", required=True, help="dataset folder (manifest.json + shards)")
    parser.add_argument("--out", required=True, help="the .npz file to write")
    parser.add_argument("--split", default="train", help="which split to play (default train)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed of the first conversation (default 0)")
    parser.add_argument("--backend", default="onnxruntime", help="torch, onnxruntime or tensorrt (default onnxruntime)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from face_expr_ros.learning.rollouts import collect_rollouts, save_rollouts

    tracks, meta = collect_rollouts(args.model, args.data, args.split, args.seed, args.backend,
                                    progress=not args.no_progress)
    save_rollouts(args.out, tracks, meta)
    print(f"{len(tracks)} rollouts: {args.out}")
    return 0
