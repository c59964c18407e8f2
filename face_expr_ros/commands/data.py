"""``face-expr data``: make, rate, inspect and import conversation datasets."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="make, rate, inspect and import conversation datasets",
        description="Datasets of dyadic conversations in shard form (see docs/data.md): generate "
        "synthetic ones, rate them with simulated raters, summarise them, render their media, or "
        "build them from real recordings.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = actions.add_parser(
        "synth", help="generate synthetic conversations into a dataset folder",
        description="Generate N seeded conversations (espeak-ng speech, speaker faces, listener "
        "styles) as shards plus manifest.json. The same arguments give byte-identical shards.",
    )
    synth.add_argument("out", type=Path, help="dataset folder to create")
    synth.add_argument("-n", "--conversations", type=int, default=100, help="how many (default 100)")
    synth.add_argument("--seed", type=int, default=0, help="first conversation seed (default 0)")
    synth.add_argument("--style", default=None, help="force one listener style (default: the mix)")
    synth.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: cores)")
    synth.set_defaults(func=run_synth)

    rate = actions.add_parser(
        "rate", help="rate every listener in a dataset with a simulated rater panel",
        description="Score each conversation's listener on Empathy, Appropriateness, Engagement and "
        "Naturalness (1-5) with a panel drawn from --panel-seed; writes ratings.json in the folder.",
    )
    rate.add_argument("dataset", type=Path, help="dataset folder")
    rate.add_argument("--panel-seed", type=int, default=1000, help="rater panel seed (default 1000)")
    rate.add_argument("--raters", type=int, default=5, help="raters in the panel (default 5)")
    rate.set_defaults(func=run_rate)

    stats = actions.add_parser(
        "stats", help="summary table and plots of a dataset",
        description="Print splits, hours, speakers, scripts, style and emotion mixes, and rater "
        "scores per style (after `data rate`); write plots to DATASET/stats/.",
    )
    stats.add_argument("dataset", type=Path, help="dataset folder")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(func=run_stats)


def _fail(message: str) -> int:
    print(f"face-expr data: error: {message}")
    return 2


def run_synth(args: argparse.Namespace) -> int:
    from face_expr_ros.learning.build_data import SynthSpec, synthesize_dataset

    if args.conversations < 1:
        return _fail(f"--conversations must be >= 1, got {args.conversations}")
    if args.out.exists() and any(args.out.iterdir()):
        return _fail(f"{args.out} exists and is not empty; choose a new folder")
    spec = SynthSpec(args.conversations, seed=args.seed, style=args.style)
    manifest = synthesize_dataset(args.out, spec, workers=max(1, args.workers))
    print(f"wrote {len(manifest.conversations)} conversations to {args.out}/ (data hash "
          f"{manifest.data_hash()[:16]})")
    return 0


def run_rate(args: argparse.Namespace) -> int:
    from face_expr_ros.learning.data_report import RATINGS_FILE, rate_dataset

    result = rate_dataset(args.dataset, args.panel_seed, args.raters)
    print(f"rated {len(result['conversations'])} conversations with {args.raters} raters "
          f"(panel seed {args.panel_seed}); wrote {args.dataset / RATINGS_FILE}")
    if result["skipped_without_timeline"]:
        print(f"skipped {result['skipped_without_timeline']} without a timeline (real recordings)")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from face_expr_ros.learning.data_report import dataset_stats, format_stats, plot_stats

    stats = dataset_stats(args.dataset)
    if args.json:
        print(json.dumps(stats, indent=1))
        return 0
    print(format_stats(stats))
    for path in plot_stats(args.dataset, stats):
        print(f"plot: {path}")
    return 0
