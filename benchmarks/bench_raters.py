"""Rater benchmark: mean scores per listener style over N shared contexts, and rater agreement.

For each of N conversations (speaker contexts) every style renders a listener track in the
same context (paired design). Two independent panels (different seeds) rate every clip.
Reports per-style means (panel A), Spearman and Kendall correlation between the panels' mean
scores over all clips, the mean pairwise Pearson correlation between individual raters of
panel A (inter-rater), and the style ranking agreement between panels.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_raters.py [--n 200] [--raters 10]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from face_expr_ros.sim.conversation import generate_conversation
from face_expr_ros.sim.listeners import STYLES, listener_track, sample_params
from face_expr_ros.sim.raters import CRITERIA, Percept, RaterPanel, perceive


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200, help="number of conversations (contexts)")
    ap.add_argument("--raters", type=int, default=10)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "raters.json"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    percepts: dict[str, list[Percept]] = {s: [] for s in STYLES}
    for i in range(args.n):
        c = generate_conversation(10_000 + i, style="attentive")
        rng = np.random.default_rng([i, 77])
        for s in STYLES:
            tr = listener_track(sample_params(s, rng), c.timeline, c.speaker_track, i)
            percepts[s].append(perceive(tr, c.timeline))
    t_gen = time.perf_counter() - t0

    panel_a, panel_b = RaterPanel.from_seed(1, args.raters), RaterPanel.from_seed(2, args.raters)
    all_p = [p for s in STYLES for p in percepts[s]]
    t1 = time.perf_counter()
    ra = panel_a.rate_percepts(all_p)
    t_rate = time.perf_counter() - t1
    rb = panel_b.rate_percepts(all_p)
    n_ratings = len(all_p) * args.raters

    labels = np.repeat(np.arange(len(STYLES)), args.n)
    table: dict[str, dict[str, float]] = {}
    for k, s in enumerate(STYLES):
        m = labels == k
        row = {c: float(ra.mean[m, j].mean()) for j, c in enumerate(CRITERIA)}
        row["overall"] = float(ra.overall[m].mean())
        row.update({f"{c}_sd": float(ra.mean[m, j].std()) for j, c in enumerate(CRITERIA)})
        table[s] = row

    agreement: dict[str, dict[str, float]] = {}
    for j, c in enumerate([*CRITERIA, "overall"]):
        a = ra.overall if c == "overall" else ra.mean[:, j]
        b = rb.overall if c == "overall" else rb.mean[:, j]
        entry = {"spearman_panels": float(spearmanr(a, b).statistic),
                 "kendall_panels": float(kendalltau(a, b).statistic)}
        if c != "overall":
            x = ra.scores[:, :, j]
            cc = np.corrcoef(x.T)
            entry["inter_rater_pearson"] = float(cc[np.triu_indices_from(cc, 1)].mean())
        sa = [a[labels == k].mean() for k in range(len(STYLES))]
        sb = [b[labels == k].mean() for k in range(len(STYLES))]
        entry["style_rank_kendall_panels"] = float(kendalltau(sa, sb).statistic)
        agreement[c] = entry

    print(f"{args.n} contexts x {len(STYLES)} styles, panel of {args.raters} raters (seed 1); "
          f"generation+perception {t_gen:.1f} s, rating {n_ratings} ratings in {t_rate * 1000:.0f} ms")
    print(f"{'style':<14}" + "".join(f"{c[:13]:>14}" for c in [*CRITERIA, "overall"]))
    for s in STYLES:
        print(f"{s:<14}" + "".join(f"{table[s][c]:>14.2f}" for c in [*CRITERIA, "overall"]))
    print("\nagreement (panel seed 1 vs seed 2, over all clips):")
    for c, e in agreement.items():
        print(f"  {c:<16} " + "  ".join(f"{k}={v:.3f}" for k, v in e.items()))

    out = {
        "n_contexts": args.n, "n_raters": args.raters, "styles": list(STYLES), "criteria": list(CRITERIA),
        "panel_seeds": [1, 2], "mean_scores_panel_a": table, "agreement": agreement,
        "ratings_per_second": n_ratings / max(t_rate, 1e-9),
        "clips_per_second_generate_and_perceive": len(all_p) / t_gen,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
