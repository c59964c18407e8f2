"""``face-expr render``: a 55-d expression trace (CSV) -> an avatar video (mesh or photo avatar)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render",
        help="render an expression trace (CSV) as an avatar video (--avatar mesh|photo)",
        description="Drive the shaded mesh avatar or the photo avatar (default photo: "
        "skimage.data.astronaut(), or --photo PATH) with every frame of a trace.",
    )
    parser.add_argument("trace", help="trace CSV as written by `face-expr track`")
    parser.add_argument("-o", "--out", help="output video (default: <trace>_<avatar>.mp4)")
    parser.add_argument("--avatar", choices=("mesh", "photo"), default="photo", help="which avatar to draw")
    parser.add_argument("--photo", help="face photo for the photo avatar (default: the astronaut)")
    parser.add_argument("--size", type=int, default=512, help="output width and height in pixels")
    parser.add_argument("--fps", type=float, default=0.0, help="frame rate (default: from the trace's times)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from face_expr_ros.rig.render import make_renderer
    from face_expr_ros.rig.trace_io import read_trace

    try:
        trace = read_trace(args.trace)
    except (OSError, ValueError) as err:
        print(f"error: {err}")
        return 2
    if len(trace) == 0:
        print(f"error: {args.trace} has no frames")
        return 2
    try:
        renderer = make_renderer(args.avatar, args.photo, size=args.size)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    out = Path(args.out) if args.out else Path(args.trace).with_suffix("").with_name(
        Path(args.trace).stem + f"_{args.avatar}.mp4"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    fps = args.fps if args.fps > 0 else trace.fps
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (args.size, args.size))
    for frame in tqdm(trace.frames, desc=f"render {args.avatar}", unit="frame"):
        writer.write(renderer.render(frame)[:, :, ::-1])
    writer.release()
    print(f"wrote {out} ({len(trace)} frames at {fps:.1f} fps)")
    return 0
