"""``face-expr eval``: score a policy and the baselines on a dataset split."""

from __future__ import annotations

import argparse
from pathlib import Path

from face_expr_ros.policy.persona import DEFAULT_PERSONA_SPREAD, parse_choice
from face_expr_ros.policy.sampling import (
    DEFAULT_CODE_PERSISTENCE,
    DEFAULT_EYELID_TEMPERATURE,
    DEFAULT_GAZE_TEMPERATURE,
    DEFAULT_HEAD_TEMPERATURE,
    DEFAULT_LEVEL_NOISE_TAU_S,
    DEFAULT_TEMPERATURE,
    DEFAULT_TOKEN_TEMPERATURE,
    DEFAULT_TOP_P,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a listener policy and baselines: metrics, simulated raters, plots",
        description="Stream every conversation of a split through the policy (greedy and sampled) and "
        "the baselines (random training listener, nearest-neighbour retrieval, delayed mirror, rule-based "
        "styles), compute L2, FD, P-FD, variation, SI diversity, rPCC, affect L2 and the REACT metrics "
        "against the recorded listener, rate every track with a simulated rater panel, and write "
        "results.md, results.json and plots to --out (see docs/evaluation.md).",
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (manifest.json + shards)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"), help="split (default test)")
    parser.add_argument("--policy", type=Path, default=None,
                        help="policy model directory (default: evaluate the baselines only)")
    parser.add_argument("--samples", type=int, default=10,
                        help="sampled runs per conversation for the policy and stochastic baselines (default 10; "
                        "with 3, the FD of random-train moves from 0.010 to 0.028 with the seed)")
    parser.add_argument("--out", type=Path, default=Path("eval_out"), help="output folder (default eval_out)")
    parser.add_argument("--max-conversations", type=int, default=None, help="evaluate only the first N")
    parser.add_argument("--panel-seed", type=int, default=2000,
                        help="evaluation rater panel seed; keep it different from training panels (default 2000)")
    parser.add_argument("--raters", type=int, default=5, help="raters in the panel (default 5)")
    parser.add_argument("--backend", default="onnxruntime", help="policy back-end: auto | torch | onnxruntime | "
                        "tensorrt (default onnxruntime)")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE,
                        help=f"sampling temperature of the chunk code (default {DEFAULT_TEMPERATURE})")
    parser.add_argument("--token-temperature", type=float, default=DEFAULT_TOKEN_TEMPERATURE,
                        help=f"sampling temperature of the tokens given the code (default {DEFAULT_TOKEN_TEMPERATURE})")
    parser.add_argument("--eyelid-temperature", type=float, default=DEFAULT_EYELID_TEMPERATURE,
                        help="sampling temperature of the eyelid tokens (blinks are rare events; "
                        f"default {DEFAULT_EYELID_TEMPERATURE})")
    parser.add_argument("--gaze-temperature", type=float, default=DEFAULT_GAZE_TEMPERATURE,
                        help="sampling temperature of the gaze tokens (glances away are rare events; "
                        f"default {DEFAULT_GAZE_TEMPERATURE})")
    parser.add_argument("--head-temperature", type=float, default=DEFAULT_HEAD_TEMPERATURE,
                        help="sampling temperature of the head tokens given the code (0: the code alone decides "
                        f"when to nod; default {DEFAULT_HEAD_TEMPERATURE})")
    parser.add_argument("--code-persistence", type=float, default=DEFAULT_CODE_PERSISTENCE,
                        help="logit bonus for the previous plan's code (0 = off; "
                        f"default {DEFAULT_CODE_PERSISTENCE})")
    parser.add_argument("--level-noise-tau", type=float, default=DEFAULT_LEVEL_NOISE_TAU_S,
                        help="correlation time (s) of the quantiles at which channel levels are drawn "
                        f"(0 = a fresh draw every plan; default {DEFAULT_LEVEL_NOISE_TAU_S})")
    parser.add_argument("--persona", default="sample",
                        help="who the policy is in the sampled runs: sample (a training listener drawn per run, "
                        "the runtime's default), mean (the average listener) or N (training listener N); "
                        "greedy runs are always the average listener")
    parser.add_argument("--persona-spread", type=float, default=DEFAULT_PERSONA_SPREAD,
                        help="how far a drawn persona sits from the average listener: 1 as recorded, 0 the "
                        f"average (default {DEFAULT_PERSONA_SPREAD})")
    parser.add_argument("--top-p", type=float, default=DEFAULT_TOP_P,
                        help=f"nucleus top-p for sampled runs (default {DEFAULT_TOP_P})")
    parser.add_argument("--no-calibration", action="store_true",
                        help="play the network's raw frames, without the policy directory's output calibration "
                        "(docs/policy.md, 'Output calibration')")
    parser.add_argument("--text", choices=("auto", "minilm", "none"), default="auto",
                        help="transcript embedding: auto = what the policy was trained with (default)")
    parser.add_argument("--text-encoder-dir", type=Path, default=None,
                        help="ONNX MiniLM folder, exported there on first use (default: the user cache)")
    parser.add_argument("--baselines", default="all",
                        help="comma-separated baselines, 'all' or 'none' (names in docs/evaluation.md)")
    parser.add_argument("--workers", type=int, default=1, help="processes, one policy each (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and baselines (default 0)")
    parser.add_argument("--allow-seen", action="store_true",
                        help="score conversations that the policy or the baselines were fitted on (refused by "
                             "default: those scores measure memory, not generalisation); the report says so")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from face_expr_ros.eval.baselines import BASELINE_NAMES
    from face_expr_ros.eval.evaluate import EvalConfig, evaluate, results_markdown

    if args.baselines == "all":
        names = BASELINE_NAMES
    elif args.baselines == "none":
        names = ()
    else:
        names = tuple(n.strip() for n in args.baselines.split(",") if n.strip())
        unknown = [n for n in names if n not in BASELINE_NAMES]
        if unknown:
            print(f"face-expr eval: unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINE_NAMES)}")
            return 2
    cfg = EvalConfig(
        data=args.data, split=args.split, policy=args.policy, samples=args.samples, out=args.out,
        max_conversations=args.max_conversations, panel_seed=args.panel_seed, n_raters=args.raters,
        backend=args.backend, temperature=args.temperature, top_p=args.top_p,
        token_temperature=args.token_temperature,
        eyelid_temperature=args.eyelid_temperature, gaze_temperature=args.gaze_temperature,
        head_temperature=args.head_temperature,
        code_persistence=args.code_persistence,
        level_noise_tau_s=args.level_noise_tau, persona=parse_choice(args.persona),
        persona_spread=args.persona_spread, calibrate=not args.no_calibration, text=args.text,
        text_encoder_dir=args.text_encoder_dir, baselines=names, seed=args.seed, workers=args.workers,
        allow_seen=args.allow_seen, progress=not args.no_progress,
    )
    try:
        result = evaluate(cfg)
    except ValueError as err:
        print(f"face-expr eval: {err}")
        return 2
    print(results_markdown(result))
    print(f"face-expr eval: wrote {len(result.files)} file(s) to {args.out}/")
    for path in result.files:
        print(f"  {path}")
    check = result.sampling_check
    if check.get("checked") and not check["ok"]:
        # Reported, not fatal: the table is still valid, the policy's sampling settings need a look.
        print(f"face-expr eval: WARNING: sampled runs' mean rater score differs from greedy's by "
              f"{check['difference']:+.2f} (more than ±{check['tolerance']})")
    return 0
