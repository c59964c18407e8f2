"""Feature-level generation throughput: hours of conversation generated per minute.

Generates conversations in the no-audio fast mode (duration-model timeline, speaker track,
listener track) on a process pool, and a few with espeak-ng audio for comparison.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_synth.py [--n 400] [--workers 2] [--audio 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from face_expr_ros.sim.conversation import generate_conversation


def _one(seed: int, with_audio: bool = False) -> float:
    return generate_conversation(seed, with_audio=with_audio).duration_s


def _audio(seed: int) -> float:
    return _one(seed, True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--audio", type=int, default=4, help="conversations with espeak-ng audio (0 to skip)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "synth.json"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        durs = list(pool.map(_one, range(args.n), chunksize=8))
    wall = time.perf_counter() - t0
    hours = sum(durs) / 3600.0
    out: dict[str, object] = {
        "mode": "features (no audio)", "n_conversations": args.n, "workers": args.workers,
        "wall_s": wall, "conversation_hours": hours, "hours_per_minute": hours / (wall / 60.0),
        "mean_duration_s": sum(durs) / len(durs), "cpu_count": os.cpu_count(),
    }
    print(f"features: {args.n} conversations, {hours:.2f} h in {wall:.1f} s on {args.workers} workers "
          f"-> {out['hours_per_minute']:.2f} h of conversation per minute")
    if args.audio and shutil.which("espeak-ng"):
        t0 = time.perf_counter()
        with ProcessPoolExecutor(args.workers) as pool:
            adurs = list(pool.map(_audio, range(args.audio)))
        awall = time.perf_counter() - t0
        out["audio"] = {"n_conversations": args.audio, "wall_s": awall,
                        "hours_per_minute": sum(adurs) / 3600.0 / (awall / 60.0)}
        print(f"with espeak-ng audio: {args.audio} conversations in {awall:.1f} s "
              f"-> {out['audio']['hours_per_minute']:.3f} h per minute")  # type: ignore[index]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
