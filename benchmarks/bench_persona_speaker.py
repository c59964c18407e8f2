#!/usr/bin/env python3
"""How much of a listener's persona is really its speaker? (docs/policy.md, "Persona")

A persona is computed from a whole recorded conversation, so it can hold the speaker's part in
it (a cheerful speaker, a smiling listener). Carried into another conversation by drawing it from
the bank, that part is wrong there. This script fits persona spaces on the training split with
and without the speaker adjustment of ``PersonaSpace.fit`` and reports, per persona component,
the held-out R^2 of predicting it from the speaker's statistics (ridge regression, 3-fold
cross-validation over conversations; 0 = the component says nothing about the speaker).

    .venv/bin/python benchmarks/bench_persona_speaker.py --data data/synth

Prints a table and writes ``benchmarks/results/persona_speaker.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from face_expr_ros.learning.shards import iter_conversations
from face_expr_ros.policy.network import PolicyConfig
from face_expr_ros.policy.persona import PersonaSpace, ridge_map, standardiser, track_statistics


def held_out_r2(features: NDArray[np.float64], targets: NDArray[np.float64], ridge: float, folds: int = 3,
                seed: int = 0) -> NDArray[np.float64]:
    """Per target column, 1 - SSE / SST of a ridge regression on ``features`` over held-out folds."""
    order = np.random.default_rng(seed).permutation(len(features))
    sse = np.zeros(targets.shape[1])
    sst = np.zeros(targets.shape[1])
    for held in np.array_split(order, folds):
        fit = np.setdiff1d(order, held)
        mu, sd = standardiser(features[fit])
        x_fit, x_held = (features[fit] - mu) / sd, (features[held] - mu) / sd
        y_mean = targets[fit].mean(0)
        w = ridge_map(x_fit, targets[fit] - y_mean, ridge)
        sse += ((targets[held] - y_mean - x_held @ w) ** 2).sum(0)
        sst += ((targets[held] - y_mean) ** 2).sum(0)
    return 1.0 - sse / sst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/synth"), help="dataset folder (face-expr data synth)")
    p.add_argument("--dim", type=int, default=PolicyConfig().persona_dim, help="persona components")
    p.add_argument("--ridge", type=float, default=0.5, help="penalty per conversation of the R^2 probe")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/persona_speaker.json"))
    args = p.parse_args()

    conversations = list(iter_conversations(args.data, "train"))
    listeners = [c.arrays["listener_expression"] for c in conversations]
    speakers = [c.arrays["speaker_expression"] for c in conversations]
    speaker_stats = np.stack([track_statistics(s, "speaker") for s in speakers])
    same_speaker = [np.zeros_like(s) for s in speakers]  # no speaker information: the unadjusted space
    spaces = {"unadjusted": PersonaSpace.fit(listeners, same_speaker, args.dim),
              "speaker-adjusted": PersonaSpace.fit(listeners, speakers, args.dim)}
    r2 = {name: held_out_r2(speaker_stats, space.bank.astype(np.float64), args.ridge).tolist()
          for name, space in spaces.items()}

    print(f"{len(conversations)} training conversations; held-out R^2 of each persona component "
          "from the speaker's statistics")
    print("| persona | " + " | ".join(f"c{k + 1}" for k in range(args.dim)) + " |")
    print("|---|" + "---|" * args.dim)
    for name, values in r2.items():
        print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"data": str(args.data), "conversations": len(conversations), "dim": args.dim,
                                    "ridge": args.ridge, "held_out_r2": r2}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
