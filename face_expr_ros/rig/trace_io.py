"""Expression traces on disk: one CSV row per frame.

Columns: ``time`` (seconds), the 55 channels of :data:`face_expr_ros.expression.EXPRESSION_NAMES`
in order, ``confidence`` (0..1) and ``face_present`` (0/1). Reading accepts the columns in
any order and checks that every channel is present, so files stay readable when tools add
columns.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from face_expr_ros.expression import DIM, EXPRESSION_NAMES, FPS

HEADER: tuple[str, ...] = ("time", *EXPRESSION_NAMES, "confidence", "face_present")


@dataclass
class Trace:
    """A recorded expression sequence: times (N,), frames (N, 55), confidence (N,), face_present (N,)."""

    time: NDArray[np.float64]
    frames: NDArray[np.float32]
    confidence: NDArray[np.float32]
    face_present: NDArray[np.bool_]

    def __len__(self) -> int:
        return len(self.time)

    @property
    def fps(self) -> float:
        """Frame rate from the median time step (``FPS`` when it cannot be told)."""
        if len(self.time) < 2:
            return FPS
        dt = float(np.median(np.diff(self.time)))
        return 1.0 / dt if dt > 0 else FPS


def write_trace(
    path: str | Path,
    time: ArrayLike,
    frames: ArrayLike,
    confidence: ArrayLike | None = None,
    face_present: ArrayLike | None = None,
) -> None:
    """Write a trace CSV (header + one row per frame)."""
    t = np.asarray(time, dtype=np.float64).reshape(-1)
    f = np.asarray(frames, dtype=np.float64).reshape(len(t), -1)
    if f.shape[1] != DIM:
        raise ValueError(f"frames must have {DIM} columns, got {f.shape[1]}")
    c = np.ones(len(t)) if confidence is None else np.asarray(confidence, dtype=np.float64).reshape(-1)
    p = np.ones(len(t), dtype=bool) if face_present is None else np.asarray(face_present, dtype=bool).reshape(-1)
    if not (len(c) == len(p) == len(t)):
        raise ValueError("time, frames, confidence and face_present must have the same length")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for k in range(len(t)):
            w.writerow([f"{t[k]:.6f}", *(f"{v:.5f}" for v in f[k]), f"{c[k]:.4f}", int(p[k])])


def read_trace(path: str | Path) -> Trace:
    """Read a trace CSV written by :func:`write_trace` (or any CSV with those columns)."""
    path = Path(path)
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path} is empty") from None
        col = {name.strip(): i for i, name in enumerate(header)}
        missing = [n for n in EXPRESSION_NAMES if n not in col]
        if missing:
            raise ValueError(f"{path} lacks expression column(s) {missing[:5]}{'...' if len(missing) > 5 else ''}")
        rows = [r for r in reader if r]
    n = len(rows)
    frames = np.zeros((n, DIM), dtype=np.float32)
    times = np.arange(n, dtype=np.float64) / FPS
    conf = np.ones(n, dtype=np.float32)
    present = np.ones(n, dtype=bool)
    idx = [col[name] for name in EXPRESSION_NAMES]
    for k, r in enumerate(rows):
        try:
            frames[k] = [float(r[i]) for i in idx]
            if "time" in col:
                times[k] = float(r[col["time"]])
            if "confidence" in col:
                conf[k] = float(r[col["confidence"]])
            if "face_present" in col:
                present[k] = float(r[col["face_present"]]) != 0.0
        except (ValueError, IndexError) as err:
            raise ValueError(f"{path}: bad row {k + 2}: {err}") from None
    return Trace(times, frames, conf, present)
