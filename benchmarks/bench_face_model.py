"""Speed of the face pipeline on one core: tracking at 640x480 and both avatar renderers at 512x512.

Run pinned to one core for comparable numbers:

    taskset -c 0 python benchmarks/bench_face_model.py

Prints a table and writes benchmarks/results/face_speed.json (median and 90th percentile
of >= 100 frames each, after a short warm-up).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTEROP_THREADS",
             "TF_NUM_INTRAOP_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from face_expr_ros.expression import DIM, index  # noqa: E402
from face_expr_ros.perception.face_tracker import FaceTracker  # noqa: E402
from face_expr_ros.rig.render import MeshRenderer, PhotoRenderer  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "face_speed.json"


def _frames(n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    f = np.zeros((n, DIM), dtype=np.float32)
    f[:, :52] = rng.uniform(0.0, 0.5, (n, 52)) * (rng.random((n, 52)) < 0.3)
    f[:, index("headYaw")] = np.deg2rad(rng.uniform(-20, 20, n))
    f[:, index("headPitch")] = np.deg2rad(rng.uniform(-15, 15, n))
    return f


def _time(fn, items) -> list[float]:  # noqa: ANN001
    out = []
    for it in items:
        t = time.perf_counter()
        fn(it)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=120)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    frames = _frames(args.frames + 10)
    mesh, photo = MeshRenderer(), PhotoRenderer()
    rows = {}
    for name, r in (("render_mesh_512", mesh), ("render_photo_512", photo)):
        _time(r.render, frames[:10])
        rows[name] = _time(r.render, frames[10:])
    # Tracking input: photo-avatar frames placed in a 640x480 camera image.
    imgs = []
    for f in frames:
        canvas = np.full((480, 640, 3), 90, np.uint8)
        canvas[:, 80:560] = cv2.resize(photo.render(f), (480, 480))
        imgs.append(canvas)
    for name, static in (("track_640x480_detect_every_frame", True), ("track_640x480_video_mode", False)):
        with FaceTracker(static_image_mode=static) as tracker:
            _time(tracker.process, imgs[:10])
            rows[name] = _time(tracker.process, imgs[10:])
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores_visible": os.cpu_count(),
                    "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None},
        "frames": args.frames,
        "ms_per_frame": {
            k: {"median": float(np.median(v)), "p90": float(np.percentile(v, 90))} for k, v in rows.items()
        },
    }
    print(f"{'job':36s} {'median ms':>10s} {'p90 ms':>8s}")
    for k, v in result["ms_per_frame"].items():
        print(f"{k:36s} {v['median']:10.2f} {v['p90']:8.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
