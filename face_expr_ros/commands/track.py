"""``face-expr track``: a video or camera -> 55-d expression trace (CSV) and a landmark overlay video."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "track",
        help="track a face in a video or camera: write the 55-d trace (CSV) and a landmark overlay video",
        description="Run MediaPipe Face Mesh and the expression fit on every frame. The CSV has a "
        "header of time, the 55 channel names, confidence and face_present.",
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("video", nargs="?", help="input video file")
    src.add_argument("--camera", type=int, metavar="N", help="camera index to read instead of a file")
    parser.add_argument("-o", "--out", help="trace CSV (default: <video>_trace.csv or camera_trace.csv)")
    parser.add_argument("--overlay", help="overlay video path (default: <video>_overlay.mp4)")
    parser.add_argument("--no-overlay", action="store_true", help="do not write the overlay video")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0: all)")
    parser.add_argument("--no-adapt", action="store_true", help="stateless: no per-person running neutral")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np
    from tqdm import tqdm

    from face_expr_ros.expression import ARKIT_BLENDSHAPES, FPS
    from face_expr_ros.perception.face_tracker import FaceTracker
    from face_expr_ros.rig.trace_io import write_trace

    if args.camera is not None:
        cap = cv2.VideoCapture(args.camera)
        stem = Path("camera")
    else:
        if not Path(args.video).exists():
            print(f"error: no such video: {args.video}")
            return 2
        cap = cv2.VideoCapture(args.video)
        stem = Path(args.video).with_suffix("")
    if not cap.isOpened():
        print("error: cannot open the video source")
        return 2
    fps = cap.get(cv2.CAP_PROP_FPS) or FPS
    fps = fps if 1.0 <= fps <= 240.0 else FPS
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if args.max_frames and (total is None or args.max_frames < total):
        total = args.max_frames
    out_csv = Path(args.out) if args.out else Path(f"{stem}_trace.csv")
    overlay_path = None if args.no_overlay else Path(args.overlay or f"{stem}_overlay.mp4")
    writer = None
    times, frames, conf, present = [], [], [], []
    with FaceTracker(channel_order="bgr", adapt_neutral=not args.no_adapt) as tracker:
        bar = tqdm(total=total, desc="track", unit="frame")
        k = 0
        while not args.max_frames or k < args.max_frames:
            ok, img = cap.read()
            if not ok:
                break
            obs = tracker.process(img)
            times.append(k / fps)
            frames.append(obs.expression)
            conf.append(obs.confidence)
            present.append(obs.face_present)
            if overlay_path is not None:
                if writer is None:
                    overlay_path.parent.mkdir(parents=True, exist_ok=True)
                    writer = cv2.VideoWriter(str(overlay_path), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                             (img.shape[1], img.shape[0]))
                writer.write(_overlay(img, obs, ARKIT_BLENDSHAPES))
            k += 1
            bar.update(1)
        bar.close()
    cap.release()
    if writer is not None:
        writer.release()
    write_trace(out_csv, np.array(times), np.array(frames).reshape(-1, 55), np.array(conf), np.array(present))
    print(f"wrote {out_csv} ({k} frames, face in {int(np.sum(present))})"
          + (f" and {overlay_path}" if overlay_path is not None and k else ""))
    return 0


def _overlay(img, obs, names):  # noqa: ANN001 - numpy/cv2 types, internal helper
    import cv2
    import numpy as np

    out = img.copy()
    if obs.landmarks is not None:
        for x, y in np.round(obs.landmarks[:, :2]).astype(int):
            cv2.circle(out, (int(x), int(y)), 1, (80, 255, 80), -1)
    top = np.argsort(obs.expression[: len(names)])[::-1][:5]
    lines = [f"{names[i]} {obs.expression[i]:.2f}" for i in top if obs.expression[i] > 0.05]
    pose = np.rad2deg(obs.expression[len(names):])
    lines.append(f"pitch {pose[0]:+.0f} yaw {pose[1]:+.0f} roll {pose[2]:+.0f}  conf {obs.confidence:.2f}")
    if not obs.face_present:
        lines = ["no face"]
    for j, text in enumerate(lines):
        cv2.putText(out, text, (8, 20 + 18 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out
