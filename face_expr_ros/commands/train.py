"""``face-expr train``: supervised training (SFT) of the listener policy on a dataset."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from face_expr_ros.learning import sft

    parser = subparsers.add_parser(
        "train",
        help="train the listener policy by imitation (SFT) on a dataset",
        description="Supervised fine-tuning: token cross-entropy + temporal smoothness, AdamW with warm-up "
        "and cosine decay, resumable checkpoints, CSV log and PNG curves in --out; the trained policy "
        "(safetensors, tokenizer, ONNX) lands in OUT/policy. For several processes or GPUs run "
        "`torchrun --nproc_per_node N -m face_expr_ros.learning.sft` with the same options.",
    )
    sft.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from face_expr_ros.learning import sft

    policy_dir = sft.train(sft.config_from_args(args))
    print(f"trained policy: {policy_dir}")
    return 0
