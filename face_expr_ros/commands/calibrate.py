"""``face-expr calibrate``: fit a policy's output calibration on its training conversations."""

from __future__ import annotations

import argparse

from face_expr_ros.policy.calibration import DEFAULT_MAX_GAIN, FACE_CHANNELS, HEAD_CHANNELS
from face_expr_ros.policy.persona import DEFAULT_PERSONA_SPREAD


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit the output calibration that gives a policy's frames the recorded listeners' spread",
        description="Plays every conversation of the training split through the policy, closed loop, with the "
        "runtime's defaults, fits the optimal-transport map from the Gaussian of its frames to the Gaussian of "
        "the recorded listeners' frames (the blendshapes but the eyelids; the head pose too with --with-head; gains "
        "capped) and the quantile map of eyelid closure (blinks are events, not Gaussian levels), "
        "and writes it into the policy directory as calibration.npz, listed in the manifest. The runtime then "
        "applies it to every published frame (docs/policy.md, 'Output calibration').",
    )
    parser.add_argument("--model", required=True, help="policy directory (e.g. RUN/policy); written in place")
    parser.add_argument("--data", required=True, help="the dataset the policy was trained on")
    parser.add_argument("--samples", type=int, default=1, help="runs per training conversation (default 1)")
    parser.add_argument("--max-gain", type=float, default=DEFAULT_MAX_GAIN,
                        help=f"largest stretch along any direction (default {DEFAULT_MAX_GAIN})")
    parser.add_argument("--with-head", action="store_true",
                        help="map the head pose too (default: the blendshapes only; a stretched head nods at "
                        "the wrong times)")
    parser.add_argument("--persona-spread", type=float, default=DEFAULT_PERSONA_SPREAD,
                        help="the persona spread the policy will be run at (default "
                        f"{DEFAULT_PERSONA_SPREAD}, the runtime's)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--backend", default="onnxruntime", help="torch, onnxruntime or tensorrt (default onnxruntime)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from face_expr_ros.learning.calibrate import fit_calibration
    from face_expr_ros.learning.rollouts import RolloutError
    from face_expr_ros.policy.calibration import CalibrationError
    from face_expr_ros.policy.model_dir import PolicyFileError, add_calibration

    try:
        channels = FACE_CHANNELS + HEAD_CHANNELS if args.with_head else FACE_CHANNELS
        calibration = fit_calibration(args.model, args.data, samples=args.samples, seed=args.seed,
                                      max_gain=args.max_gain, channels=channels,
                                      persona_spread=args.persona_spread, backend=args.backend,
                                      progress=not args.no_progress)
        path = add_calibration(args.model, calibration)
    except (CalibrationError, PolicyFileError, RolloutError) as err:
        print(f"face-expr calibrate: {err}")
        return 2
    m = calibration.meta
    print(f"face-expr calibrate: {path} from {m['frames']} frames of {m['conversations']} training conversations; "
          f"{len(m['channels'])} channels, gains {m['smallest_gain']:.2f} to {m['largest_gain']:.2f} "
          f"(cap {m['max_gain']})")
    return 0
