#!/usr/bin/env python3
"""Where does a method's FD come from? FD and P-FD split by cause, channel spread and behaviour mode.

``face-expr eval`` gives one FD per method; this script says what it is made of, for the
sampled policy and the baselines on one split (the tracks are drawn exactly as ``face-expr eval``
draws them: same seeds, same runtime settings):

* the mean term and the covariance term, and the FD left after giving the generated frames the
  recorded listeners' per-channel spreads, or their correlations (``metrics.fd_terms``);
* the pooled covariance split into *within* runs (how a face moves in one conversation) and
  *between* runs (who the listener is and what the conversation is about;
  ``metrics.within_between``), as traces;
* the same split along the principal modes of the training split's recorded listeners (mode 0
  is the smile, mode 1 concern: inner brows with a frown, on the synthetic data): which
  behaviour is too narrow or too wide, and whether within or between conversations.

    .venv/bin/python benchmarks/bench_fd_breakdown.py --data data/synth --split val \\
        --policy models/policy --samples 2 --workers 2

Prints two tables and writes ``benchmarks/results/fd_breakdown.json``. About 5 minutes on the
validation split with 2 workers and 2 samples (no greedy runs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from face_expr_ros import expression as ex
from face_expr_ros.eval import metrics as M
from face_expr_ros.eval.evaluate import (
    GT,
    SAMPLED,
    EvalConfig,
    check_unseen,
    load_split,
    map_conversations,
    method_tracks,
)
from face_expr_ros.learning.shards import iter_conversations
from face_expr_ros.policy.persona import DEFAULT_PERSONA_SPREAD

DEFAULT_BASELINES = ("nn-retrieval", "random-train", "rule-mix")


def conversation_tracks(index: int) -> tuple[np.ndarray, dict[str, list[np.ndarray]]]:
    """The speaker and every method's tracks on conversation ``index`` (runs in a worker)."""
    conv, outputs = method_tracks(index)
    return conv.arrays["speaker_expression"].astype(np.float64), {
        name: [np.asarray(x, np.float64) for x in tracks] for name, (tracks, _) in outputs.items()}


def training_modes(data: Path, n_modes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (D,), principal directions (D, n_modes) and their variances of the training listeners' frames."""
    stats = M.GaussianStats(ex.DIM)
    for conv in iter_conversations(data, "train"):
        if conv.metadata.get("has_listener", True):
            stats.update(conv.arrays["listener_expression"])
    variances, vectors = np.linalg.eigh(stats.cov)
    order = np.argsort(variances)[::-1][:n_modes]
    return stats.mean, vectors[:, order], variances[order]


def mode_name(vector: np.ndarray, top: int = 3) -> str:
    """The mode's strongest channels; a yoked pair (left/right) is named once."""
    names: list[str] = []
    for k in np.argsort(-np.abs(vector)):
        stem = ex.EXPRESSION_NAMES[k].removesuffix("Left").removesuffix("Right")
        if stem not in names:
            names.append(stem)
        if len(names) == top:
            break
    return " + ".join(names)


def breakdown(speakers: list[np.ndarray], runs: list[list[np.ndarray]], reference: dict[str, M.GaussianStats],
              modes: np.ndarray) -> dict[str, object]:
    """FD terms, within/between traces and per-mode variances of one method's runs."""
    frames, paired = M.GaussianStats(ex.DIM), M.GaussianStats(2 * ex.DIM)
    flat = []
    for s, xs in zip(speakers, runs):
        for x in xs:
            frames.update(x)
            paired.update(M.paired_frames(s, x))
            flat.append(x)
    terms = M.fd_terms(frames.mean, frames.cov, reference["frames"].mean, reference["frames"].cov)
    within, between = M.within_between(flat)
    return {**terms, "p_fd": M.frechet_distance(paired.mean, paired.cov, reference["paired"].mean,
                                                reference["paired"].cov),
            "within_trace": float(np.trace(within)), "between_trace": float(np.trace(between)),
            "mode_within": np.diag(modes.T @ within @ modes).tolist(),
            "mode_between": np.diag(modes.T @ between @ modes).tolist()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/synth"))
    p.add_argument("--split", default="val")
    p.add_argument("--policy", default="models/policy", help="policy directory, or 'none' for baselines only")
    p.add_argument("--samples", type=int, default=2, help="sampled runs per conversation (policy and random baselines)")
    p.add_argument("--persona-spread", type=float, default=DEFAULT_PERSONA_SPREAD)
    p.add_argument("--baselines", default=",".join(DEFAULT_BASELINES), help="comma list, or 'none'")
    p.add_argument("--modes", type=int, default=6, help="principal modes of the training listeners to report")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-conversations", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "fd_breakdown.json")
    a = p.parse_args()

    cfg = EvalConfig(data=a.data, split=a.split, policy=None if a.policy == "none" else Path(a.policy),
                     samples=a.samples, persona_spread=a.persona_spread, workers=a.workers, greedy=False,
                     baselines=() if a.baselines == "none" else tuple(a.baselines.split(",")),
                     max_conversations=a.max_conversations)
    ids = [c.conversation_id for c in load_split(cfg)]
    check_unseen(cfg, ids)  # scores on conversations a method was fitted on measure memory
    per_conv = map_conversations(cfg, conversation_tracks, len(ids), progress="tracks")
    speakers = [s for s, _ in per_conv]
    names = list(per_conv[0][1])
    reference = {"frames": M.GaussianStats(ex.DIM), "paired": M.GaussianStats(2 * ex.DIM)}
    for s, tracks in per_conv:
        reference["frames"].update(tracks[GT][0])
        reference["paired"].update(M.paired_frames(s, tracks[GT][0]))
    _, modes, mode_var = training_modes(a.data, a.modes)
    rows = {name: breakdown(speakers, [t[name] for _, t in per_conv], reference, modes) for name in names}

    print(f"\n{a.split} split of {a.data}: {len(per_conv)} conversations, {a.samples} runs per sampled method\n")
    print("| method | FD | mean | covariance | FD at recorded spread | FD at recorded correlation | P-FD "
          "| within trace | between trace |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['fd']:.4f} | {r['mean']:.4f} | {r['covariance']:.4f} | {r['at_reference_spread']:.4f} "
              f"| {r['at_reference_correlation']:.4f} | {r['p_fd']:.4f} | {r['within_trace']:.4f} "
              f"| {r['between_trace']:.4f} |")
    print("\nVariance along the training listeners' principal modes, within runs / between runs:\n")
    print("| mode (training variance) | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for k in range(modes.shape[1]):
        cells = " | ".join(f"{rows[n]['mode_within'][k]:.4f} / {rows[n]['mode_between'][k]:.4f}" for n in names)
        print(f"| {k}: {mode_name(modes[:, k])} ({mode_var[k]:.4f}) | {cells} |")
    if SAMPLED in rows:
        print(f"\n({SAMPLED}: persona spread {a.persona_spread}, the runtime's other defaults)")

    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({
        "command": "benchmarks/bench_fd_breakdown.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items() if k != "out"),
        "conversations": len(per_conv),
        "modes": [{"name": mode_name(modes[:, k]), "training_variance": float(mode_var[k])}
                  for k in range(modes.shape[1])],
        "methods": rows}, indent=1) + "\n")
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
