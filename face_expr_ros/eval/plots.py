"""Figures a person would rather look at than read: expression traces over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import expression as ex

DEFAULT_CHANNELS: tuple[str, ...] = (
    "jawOpen", "mouthSmileLeft", "mouthFrownLeft", "browInnerUp", "browDownLeft", "eyeBlinkLeft",
    "headPitch", "headYaw",
)


def plot_expression_traces(
    traces: Mapping[str, NDArray[np.floating]],
    path: str | Path,
    channels: Sequence[str] = DEFAULT_CHANNELS,
    fps: float = ex.FPS,
    title: str = "",
) -> Path:
    """One panel per channel, one line per trace (e.g. speaker, ground truth, generated).

    Each trace is a (T, 55) array in the expression space; head angles are shown in degrees.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(channels), 1, figsize=(10, 1.3 * len(channels) + 0.8), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, name in zip(axes, channels):
        i = ex.index(name)
        is_head = name in ex.HEAD_POSE
        for label, trace in traces.items():
            values = np.asarray(trace)[:, i]
            shown = np.rad2deg(values) if is_head else values
            ax.plot(np.arange(len(values)) / fps, shown, label=label, lw=1.2)
        ax.set_ylabel(name + (" (deg)" if is_head else ""), rotation=0, ha="right", va="center", fontsize=8)
        if not is_head:
            ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8, ncol=len(traces))
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
