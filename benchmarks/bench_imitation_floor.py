#!/usr/bin/env python3
"""How low can FD and P-FD go? The sampling-noise floor of the frame-distribution metrics.

FD and P-FD (``eval/metrics.py``) compare Gaussian fits of frames pooled over a split. On a
split of a few dozen conversations, every listener being one person of one style, the pooled
distribution itself varies from draw to draw. This script measures that variation for three
references, each over several evaluation seeds (``samples`` tracks per conversation, as
``face-expr eval`` draws them):

* ``rule-mix``: the generator that made the recorded listeners, resampled for the same
  speaker: a *perfect* imitation of the data, the best any policy trained by imitation can be;
* ``random-train``: stretches of real training listeners, unrelated to the speaker;
* ``nn-retrieval``: real training listeners retrieved by speaker context (deterministic).

If the perfect imitator does not beat a replay baseline on a metric by more than the spread
across seeds, that comparison cannot rank policies: it is decided by sampling noise.

    .venv/bin/python benchmarks/bench_imitation_floor.py --data data/synth --split test --seeds 5

Prints a table and writes ``benchmarks/results/imitation_floor.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from face_expr_ros import expression as ex
from face_expr_ros.eval import metrics as M
from face_expr_ros.eval.baselines import fit_length, make_baselines
from face_expr_ros.eval.evaluate import EvalConfig, load_split
from face_expr_ros.learning.shards import iter_conversations

REFERENCES = ("rule-mix", "random-train", "nn-retrieval")


def split_distances(conversations: list, tracks: dict[str, list[list[np.ndarray]]]) -> dict[str, tuple[float, float]]:
    """FD and P-FD of every method's tracks against the recorded listeners of the split."""
    gt, gt_paired = M.GaussianStats(ex.DIM), M.GaussianStats(2 * ex.DIM)
    for conv in conversations:
        gt.update(conv.arrays["listener_expression"])
        gt_paired.update(M.paired_frames(conv.arrays["speaker_expression"], conv.arrays["listener_expression"]))
    out = {}
    for name, per_conv in tracks.items():
        frames, paired = M.GaussianStats(ex.DIM), M.GaussianStats(2 * ex.DIM)
        for conv, xs in zip(conversations, per_conv):
            for x in xs:
                frames.update(x)
                paired.update(M.paired_frames(conv.arrays["speaker_expression"], x))
        out[name] = (M.frechet_distance(frames.mean, frames.cov, gt.mean, gt.cov),
                     M.frechet_distance(paired.mean, paired.cov, gt_paired.mean, gt_paired.cov))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("data/synth"), help="dataset folder (default data/synth)")
    p.add_argument("--split", default="test", help="split to measure (default test)")
    p.add_argument("--seeds", type=int, default=5, help="evaluation seeds (default 5)")
    p.add_argument("--samples", type=int, default=10, help="tracks per conversation and seed (default 10)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/imitation_floor.json"))
    a = p.parse_args()

    conversations = load_split(EvalConfig(data=a.data, split=a.split))
    baselines = {b.name: b for b in make_baselines(iter_conversations(a.data, "train"), REFERENCES)}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in REFERENCES}
    for seed in tqdm(range(a.seeds), desc="seeds"):
        tracks = {}
        for name, b in baselines.items():
            n = 1 if b.deterministic else a.samples
            tracks[name] = [[fit_length(b.generate(c, seed=1000 * seed + k), c.n_frames) for k in range(n)]
                            for c in conversations]
        for name, value in split_distances(conversations, tracks).items():
            runs[name].append(value)

    rows = {}
    print(f"\n{a.split} split, {len(conversations)} conversations, {a.seeds} seeds x {a.samples} samples\n")
    print("| reference | FD median | FD min-max | P-FD median | P-FD min-max |")
    print("|---|---|---|---|---|")
    for name, values in runs.items():
        fd, pfd = np.array(values).T
        rows[name] = {"fd": fd.tolist(), "p_fd": pfd.tolist(), "fd_median": float(np.median(fd)),
                      "p_fd_median": float(np.median(pfd))}
        print(f"| {name} | {np.median(fd):.4f} | {fd.min():.4f}-{fd.max():.4f} | {np.median(pfd):.4f} | "
              f"{pfd.min():.4f}-{pfd.max():.4f} |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"data": str(a.data), "split": a.split, "conversations": len(conversations),
                                 "seeds": a.seeds, "samples": a.samples, "references": rows}, indent=1))
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
