"""Data pipeline benchmark: shard generation throughput, media rendering speed, and the
pixels-and-audio round trip (render a conversation, rebuild it with `data build`'s code).

    .venv/bin/python benchmarks/bench_data.py [--conversations 3] [--seconds 30] [--synth 8]

Prints tables and writes benchmarks/results/data.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from face_expr_ros import expression as ex
from face_expr_ros.eval.text_metrics import word_error_rate
from face_expr_ros.learning import recordings
from face_expr_ros.learning.build_data import SynthSpec, synthesize_dataset
from face_expr_ros.sim.conversation import generate_conversation
from face_expr_ros.sim.media import truncate, write_media

CHANNELS = ("jawOpen", "mouthSmileLeft", "mouthSmileRight", "eyeBlinkLeft", "eyeBlinkRight", "browInnerUp",
            "browDownLeft", "mouthFrownLeft", "headPitch", "headYaw", "headRoll")
RESULTS = Path(__file__).resolve().parent / "results" / "data.json"


def pick_seeds(n: int, seconds: float) -> list[int]:
    """The first seeds whose first ``seconds`` hold a joyful utterance (so smiles vary) and a sad one."""
    seeds, seed = [], 0
    while len(seeds) < n:
        conv = generate_conversation(seed)
        early = {u.emotion for u in conv.timeline.utterances if u.start < seconds - 3}
        if {"joy", "sadness"} <= early:
            seeds.append(seed)
        seed += 1
    return seeds


def synth_throughput(n: int, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        manifest = synthesize_dataset(tmp, SynthSpec(n, seed=10_000), workers=workers, progress=False)
        wall = time.perf_counter() - start
    hours = sum(c["duration_s"] for c in manifest.conversations) / 3600
    return {"conversations": n, "workers": workers, "conversation_hours": hours, "wall_s": wall,
            "hours_per_minute": hours / (wall / 60)}


def round_trip(seed: int, seconds: float, folder: Path) -> dict[str, object]:
    conv = truncate(generate_conversation(seed, with_audio=True), seconds)
    start = time.perf_counter()
    files = write_media(conv, folder / f"c{seed}", storages=(), mux=False, progress=False)
    render_s = time.perf_counter() - start
    start = time.perf_counter()
    shard = recordings.from_files(f"c{seed}", files.video, files.wav, progress=False)
    build_s = time.perf_counter() - start
    n = min(shard.n_frames, len(conv.speaker_track))
    reference = " ".join(w.word for w in conv.timeline.words)
    hypothesis = " ".join(w for w, _, _ in shard.words)
    return {"seed": seed, "frames": n, "voice": conv.speaker.voice, "render_fps": n / render_s,
            "build_fps": n / build_s, "truth": conv.speaker_track[:n],
            "tracked": shard.arrays["speaker_expression"][:n],
            "wer": word_error_rate(reference, hypothesis), "reference": reference, "hypothesis": hypothesis}


def channel_table(truth: np.ndarray, tracked: np.ndarray) -> dict[str, dict[str, float]]:
    table = {}
    for name in CHANNELS:
        i = ex.index(name)
        scale = np.rad2deg(1.0) if name in ex.HEAD_POSE else 1.0
        t, e = truth[:, i], tracked[:, i]
        corr = float(np.corrcoef(t, e)[0, 1]) if t.std() > 1e-6 and e.std() > 1e-6 else float("nan")
        table[name] = {"mae": float(np.abs(t - e).mean() * scale), "corr": corr,
                       "unit": "deg" if scale != 1.0 else "weight"}
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=3, help="rendered conversations (default 3)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of each to render (default 30)")
    parser.add_argument("--synth", type=int, default=8, help="conversations for the throughput run (default 8)")
    args = parser.parse_args()

    synth = synth_throughput(args.synth, workers=os.cpu_count() or 1)
    print(f"shard generation (espeak-ng speech + features, {synth['workers']} workers): "
          f"{synth['conversation_hours']:.2f} h of conversation in {synth['wall_s']:.1f} s = "
          f"{synth['hours_per_minute']:.2f} h/min")

    seeds = pick_seeds(args.conversations, args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        runs = [round_trip(s, args.seconds, Path(tmp)) for s in seeds]
    truth = np.concatenate([r["truth"] for r in runs])
    tracked = np.concatenate([r["tracked"] for r in runs])
    pooled = channel_table(truth, tracked)
    print(f"\nround trip over {len(runs)} conversations (seeds {seeds}), {len(truth)} frames:")
    print(f"{'channel':<18}{'MAE':>10}{'corr':>8}")
    for name, row in pooled.items():
        unit = " deg" if row["unit"] == "deg" else ""
        print(f"{name:<18}{row['mae']:>10.3f}{row['corr']:>8.3f}{unit}")
    print(f"\n{'seed':>6}{'voice':>14}{'frames':>8}{'render fps':>12}{'build fps':>11}{'WER':>7}")
    for r in runs:
        print(f"{r['seed']:>6}{r['voice']:>14}{r['frames']:>8}{r['render_fps']:>12.1f}{r['build_fps']:>11.1f}"
              f"{r['wer']:>7.2f}")
    wer = float(np.mean([r["wer"] for r in runs]))
    print(f"mean WER (pocketsphinx on espeak-ng speech): {wer:.2f}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "command": "python benchmarks/bench_data.py " + " ".join(
            f"--{k} {v}" for k, v in vars(args).items()),
        "synth": synth, "round_trip": {"seeds": seeds, "seconds": args.seconds, "channels": pooled,
                                       "mean_wer": wer,
                                       "per_conversation": [{k: v for k, v in r.items()
                                                             if k not in ("truth", "tracked")} for r in runs]},
    }, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
