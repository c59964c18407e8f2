"""Rating and summarising datasets: `face-expr data rate` and `face-expr data stats`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from face_expr_ros.learning import shards
from face_expr_ros.sim.raters import CRITERIA, RaterPanel, perceive
from face_expr_ros.sim.speech import Timeline

RATINGS_FILE = "ratings.json"


def rate_dataset(folder: str | Path, panel_seed: int = 1000, n_raters: int = 5,
                 progress: bool = True) -> dict[str, Any]:
    """Rate the listener of every synthetic conversation with a panel drawn from ``panel_seed``.

    Writes ``ratings.json`` beside the manifest and returns its content. Conversations without
    a timeline (real recordings carry no emotion labels) are skipped and counted.
    """
    from tqdm import tqdm

    folder = Path(folder)
    manifest = shards.read_manifest(folder)
    panel = RaterPanel.from_seed(panel_seed, n_raters)
    percepts, ids, skipped = [], [], 0
    for entry in tqdm(manifest.conversations, desc="perceiving", unit="conv", disable=not progress):
        conv = shards.read_conversation(folder / f"{entry['id']}.npz")
        if "timeline" not in conv.metadata:
            skipped += 1
            continue
        timeline = Timeline.from_dict(conv.metadata["timeline"])
        percepts.append(perceive(conv.arrays["listener_expression"], timeline))
        ids.append(entry["id"])
    ratings = panel.rate_percepts(percepts) if percepts else None
    result: dict[str, Any] = {"panel_seed": panel_seed, "n_raters": n_raters, "criteria": list(CRITERIA),
                              "skipped_without_timeline": skipped, "conversations": {}}
    if ratings is not None:
        for k, cid in enumerate(ids):
            scores = {c: round(float(ratings.mean[k, j]), 4) for j, c in enumerate(CRITERIA)}
            scores["overall"] = round(float(ratings.overall[k]), 4)
            result["conversations"][cid] = scores
    (folder / RATINGS_FILE).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return result


def dataset_stats(folder: str | Path) -> dict[str, Any]:
    """Counts and mixes of a dataset, with rater scores per listener style when rated."""
    folder = Path(folder)
    manifest = shards.read_manifest(folder)
    entries = manifest.conversations
    by_split = Counter(e["split"] for e in entries)
    hours = {s: sum(e.get("duration_s", 0.0) for e in entries if e["split"] == s) / 3600 for s in by_split}
    styles = Counter(e.get("style", "unknown") for e in entries)
    emotions: Counter[str] = Counter()
    for entry in entries:
        conv = shards.read_conversation(folder / f"{entry['id']}.npz")
        for utt in conv.metadata.get("timeline", {}).get("utterances", []):
            emotions[utt["emotion"]] += 1
    stats: dict[str, Any] = {
        "n_conversations": len(entries), "data_hash": manifest.data_hash(),
        "by_split": dict(by_split), "hours_by_split": {k: round(v, 3) for k, v in hours.items()},
        "styles": dict(styles), "emotions": dict(emotions),
        "speakers_by_split": {s: len({e.get("speaker_id") for e in entries if e["split"] == s}) for s in by_split},
        "scripts_by_split": {s: len({e.get("script_id") for e in entries if e["split"] == s}) for s in by_split},
    }
    ratings_path = folder / RATINGS_FILE
    if ratings_path.is_file():
        rated = json.loads(ratings_path.read_text())["conversations"]
        per_style: dict[str, dict[str, float]] = {}
        for style in styles:
            rows = [rated[e["id"]] for e in entries if e.get("style") == style and e["id"] in rated]
            if rows:
                per_style[style] = {c: round(float(np.mean([r[c] for r in rows])), 3)
                                    for c in [*CRITERIA, "overall"]}
                per_style[style]["n"] = len(rows)
        stats["ratings_by_style"] = per_style
    return stats


def format_stats(stats: dict[str, Any]) -> str:
    lines = [f"conversations: {stats['n_conversations']}   data hash: {stats['data_hash'][:16]}"]
    lines.append("split   conversations  hours   speakers  scripts")
    for split in shards.SPLITS:
        if split in stats["by_split"]:
            lines.append(f"{split:<7} {stats['by_split'][split]:>13}  {stats['hours_by_split'][split]:>5.2f}"
                         f"   {stats['speakers_by_split'][split]:>8}  {stats['scripts_by_split'][split]:>7}")
    total = sum(stats["styles"].values()) or 1
    lines.append("listener styles: " + ", ".join(f"{k} {100 * v / total:.0f}%"
                                                 for k, v in sorted(stats["styles"].items())))
    total_e = sum(stats["emotions"].values()) or 1
    lines.append("utterance emotions: " + ", ".join(f"{k} {100 * v / total_e:.0f}%"
                                                    for k, v in sorted(stats["emotions"].items())))
    if "ratings_by_style" in stats:
        header = "style".ljust(14) + "".join(c[:8].rjust(10) for c in [*CRITERIA, "overall"]) + "       n"
        lines += ["", "simulated rater scores (1-5), mean per style:", header]
        for style, row in sorted(stats["ratings_by_style"].items(), key=lambda kv: -kv[1]["overall"]):
            lines.append(style.ljust(14) + "".join(f"{row[c]:>10.2f}" for c in [*CRITERIA, "overall"])
                         + f"{row['n']:>8}")
    return "\n".join(lines)


def plot_stats(folder: str | Path, stats: dict[str, Any], out_dir: str | Path | None = None) -> list[Path]:
    """Bar charts of the style and emotion mixes, and rater score distributions per style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir) if out_dir else Path(folder) / "stats"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for ax, key, title in ((axes[0], "styles", "listener style mix"), (axes[1], "emotions", "utterance emotions")):
        items = sorted(stats[key].items())
        ax.bar([k for k, _ in items], [v for _, v in items], color="#4c72b0")
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(out / "mix.png", dpi=110)
    plt.close(fig)
    written.append(out / "mix.png")
    ratings_path = Path(folder) / RATINGS_FILE
    if ratings_path.is_file():
        rated = json.loads(ratings_path.read_text())["conversations"]
        manifest = shards.read_manifest(folder)
        styles = sorted({e.get("style", "unknown") for e in manifest.conversations})
        fig, axes = plt.subplots(1, len(CRITERIA) + 1, figsize=(16, 3.8), sharey=True)
        for ax, criterion in zip(axes, [*CRITERIA, "overall"]):
            data = [[rated[e["id"]][criterion] for e in manifest.conversations
                     if e.get("style") == s and e["id"] in rated] for s in styles]
            ax.boxplot([d if d else [np.nan] for d in data], tick_labels=styles)
            ax.set_title(criterion)
            ax.tick_params(axis="x", rotation=45)
            ax.set_ylim(1, 5)
        axes[0].set_ylabel("score (1-5)")
        fig.tight_layout()
        fig.savefig(out / "rater_scores.png", dpi=110)
        plt.close(fig)
        written.append(out / "rater_scores.png")
    return written
