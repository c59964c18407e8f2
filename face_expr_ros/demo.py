"""The main job (`make demo`): show what the system does today, end to end where it can.

The demo grows with the project. Each stage runs when its component exists and says so
plainly when it does not; the final form replays a generated conversation through the
whole ROS 2 node graph.
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import expression as ex


@dataclass
class DemoReport:
    out_dir: Path
    written: list[Path] = field(default_factory=list)
    not_built: list[str] = field(default_factory=list)


def scripted_listener_clip(seconds: float = 6.0, fps: float = ex.FPS) -> NDArray[np.float32]:
    """A hand-written listener reaction: attentive rest, a nod, a growing smile, a blink.

    Stands in for the policy until it exists; every value goes through ``expression.clamp``.
    """
    t = np.arange(int(seconds * fps)) / fps
    frames = np.zeros((len(t), ex.DIM), dtype=np.float64)

    def bump(center: float, width: float) -> NDArray[np.float64]:
        return np.exp(-0.5 * ((t - center) / width) ** 2)

    smile = 0.7 / (1 + np.exp(-(t - 3.0) * 3))
    for side in ("Left", "Right"):
        frames[:, ex.index("mouthSmile" + side)] = smile
        frames[:, ex.index("cheekSquint" + side)] = 0.4 * smile
        frames[:, ex.index("eyeBlink" + side)] = bump(1.2, 0.05) + bump(4.6, 0.05)
    frames[:, ex.index("browInnerUp")] = 0.5 * bump(1.8, 0.4)
    frames[:, ex.index("headPitch")] = np.deg2rad(8) * (bump(2.2, 0.18) + 0.7 * bump(2.7, 0.18))
    frames[:, ex.index("headYaw")] = np.deg2rad(6) * np.sin(2 * np.pi * t / seconds)
    frames[:, ex.index("headRoll")] = np.deg2rad(4) * smile
    return ex.clamp(frames)


def write_trace_csv(path: Path, frames: NDArray[np.floating], fps: float = ex.FPS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", *ex.EXPRESSION_NAMES])
        for k, frame in enumerate(frames):
            writer.writerow([f"{k / fps:.4f}", *(f"{v:.5f}" for v in frame)])
    return path


def run_demo(out_dir: Path) -> DemoReport:
    from face_expr_ros.eval.plots import plot_expression_traces

    report = DemoReport(out_dir)
    clip = scripted_listener_clip()
    report.written.append(write_trace_csv(out_dir / "listener_trace.csv", clip))
    report.written.append(
        plot_expression_traces({"listener (scripted)": clip}, out_dir / "listener_trace.png",
                               title="Scripted listener reaction in the 55-d expression space")
    )
    if importlib.util.find_spec("face_expr_ros.rig.render") is None:
        report.not_built.append("avatar rendering (face model)")
    report.not_built += [
        "synthetic conversations", "VLA policy (ONNX Runtime)", "ROS 2 node graph and rosbag replay",
    ]
    return report
