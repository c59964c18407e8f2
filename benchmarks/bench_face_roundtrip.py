"""Round trip on real pixels: photo avatar with known random weights -> tracker -> error table.

See face_expr_ros/rig/roundtrip.py for the sampling design. Every frame is rendered once and
tracked twice: with the per-person running neutral (the tracker's default, which the
acceptance is judged on) and stateless (reference neutral only). Prints per-channel mean
absolute error and correlation for both (scored channels first, then the distractor
channels, then head angles in degrees) and writes benchmarks/results/face_roundtrip.json.

The tracker's observation model was calibrated on the same photo and renderer with seed 7
(python -m face_expr_ros.rig.calibration); use any other seed here for a held-out check.

    python benchmarks/bench_face_roundtrip.py --frames 300 --seed 2024
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from face_expr_ros.rig.calibration import CAL_SEED
from face_expr_ros.rig.roundtrip import (
    CORR_LIMIT,
    HEAD_MAE_LIMIT_DEG,
    MAE_LIMIT,
    SCORED,
    RoundTripResult,
    run_round_trip_modes,
)

RESULTS = Path(__file__).resolve().parent / "results" / "face_roundtrip.json"


def _print_table(res: RoundTripResult, mode: str) -> dict[str, dict[str, float]]:
    table = res.table()
    print(f"\n== tracker mode: {mode}")
    print(f"{'channel':22s} {'role':10s} {'MAE':>7s} {'corr':>7s} {'truth':>7s} {'tracked':>8s}  pass")
    for name, s in table.items():
        role = "scored" if name in SCORED else ("head" if name.startswith("head") else "distractor")
        if role == "scored":
            ok = "yes" if s["mae"] <= MAE_LIMIT and s["corr"] >= CORR_LIMIT else "NO"
        elif name in ("headPitch", "headYaw"):
            ok = "yes" if s["mae"] <= HEAD_MAE_LIMIT_DEG else "NO"
        else:
            ok = ""
        corr = "nan" if math.isnan(s["corr"]) else f"{s['corr']:.3f}"
        unit = " deg" if role == "head" else ""
        means = f"{s['truth_mean']:7.3f} {s['tracked_mean']:8.3f}"
        print(f"{name:22s} {role:10s} {s['mae']:7.3f} {corr:>7s} {means}  {ok}{unit}")
    fails = res.failures()
    print(f"acceptance ({mode}):", "PASS" if not fails else "FAIL: " + "; ".join(fails))
    return table


def _clean(table: dict[str, dict[str, float]]) -> dict[str, dict[str, float | None]]:
    return {k: {kk: (None if isinstance(vv, float) and math.isnan(vv) else vv) for kk, vv in v.items()}
            for k, v in table.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--distractor-prob", type=float, default=0.2)
    ap.add_argument("--distractor-max", type=float, default=0.4)
    ap.add_argument("--co-active", type=float, default=0.0,
                    help="fraction of frames with antagonists (smile/frown, brow up/down) drawn together")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    results = run_round_trip_modes(args.frames, args.seed, distractor_prob=args.distractor_prob,
                                   distractor_max=args.distractor_max, co_active=args.co_active, progress=True)
    modes = {}
    for mode, res in results.items():
        table = _print_table(res, mode)
        modes[mode] = {"face_present_fraction": float(res.face_present.mean()), "channels": _clean(table),
                       "failures": res.failures()}
    fails = modes["running"]["failures"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "frames": args.frames, "seed": args.seed, "calibration_seed": CAL_SEED, "distractor_prob": args.distractor_prob,
        "distractor_max": args.distractor_max, "co_active": args.co_active,
        "limits": {"mae": MAE_LIMIT, "corr": CORR_LIMIT, "head_mae_deg": HEAD_MAE_LIMIT_DEG},
        "acceptance_mode": "running", "failures": fails, "modes": modes,
    }, indent=2) + "\n")
    print(f"wrote {out}")
    return 0 if not fails else 1


if __name__ == "__main__":
    raise SystemExit(main())
