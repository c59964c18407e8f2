"""Small signal helpers shared by the speaker and listener generators."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.signal import lfilter

from face_expr_ros.expression import FPS


def exp_smooth(x: NDArray[np.float64], tau_s: float, fps: float = FPS, order: int = 1) -> NDArray[np.float64]:
    """Causal exponential smoothing along axis 0, ``order`` times (2 = critically damped).

    y[t] = a*y[t-1] + (1-a)*x[t] with a = exp(-1/(tau*fps)); the filter starts from x[0] so
    that a constant signal passes unchanged.
    """
    if tau_s <= 0:
        return np.asarray(x, dtype=np.float64)
    a = float(np.exp(-1.0 / (tau_s * fps)))
    y = np.asarray(x, dtype=np.float64)
    for _ in range(order):
        zi = a * y[:1]  # steady state for a signal that has been at y[0] forever
        y, _ = lfilter([1.0 - a], [1.0, -a], y, axis=0, zi=zi)
    return y


def smooth_noise(rng: np.random.Generator, n: int, width: int, tau_s: float,
                 fps: float = FPS) -> NDArray[np.float64]:
    """(n, width) low-pass noise with unit standard deviation per column."""
    w = rng.standard_normal((n, width))
    y = exp_smooth(w, tau_s, fps, order=2)
    y -= y.mean(axis=0, keepdims=True)
    sd = y.std(axis=0, keepdims=True)
    return y / np.where(sd > 0, sd, 1.0)


def hann_pulse(length_frames: int) -> NDArray[np.float64]:
    """A raised-cosine bump of ``length_frames`` samples peaking at 1."""
    n = max(int(length_frames), 2)
    return 0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(n) + 0.5) / n)


def add_kernel(track: NDArray[np.float64], frame: int, kernel: NDArray[np.float64],
               amp: float | NDArray[np.float64], mode: str = "add") -> None:
    """Add (or max-combine) ``amp * kernel`` into ``track`` starting at ``frame`` (in place).

    ``track`` is 1-d, or 2-d with ``amp`` a vector over its columns.
    """
    n = track.shape[0]
    i0, i1 = max(frame, 0), min(frame + len(kernel), n)
    if i1 <= i0:
        return
    k = kernel[i0 - frame:i1 - frame]
    seg = np.multiply.outer(k, amp) if track.ndim == 2 else k * amp
    if mode == "max":
        np.maximum(track[i0:i1], seg, out=track[i0:i1])
    else:
        track[i0:i1] += seg


def blink_train(rng: np.random.Generator, n: int, rate_per_min: float, fps: float = FPS,
                dur_range: tuple[float, float] = (0.10, 0.15), extra_times: list[float] | None = None
                ) -> NDArray[np.float64]:
    """Eyelid closure in [0, 1] with Poisson blinks of 100-150 ms (closing faster than opening).

    Inter-blink intervals are exponential with mean 60/rate s, with a 0.4 s refractory gap;
    ``extra_times`` adds blinks at given times (e.g. at turn ends).
    """
    out = np.zeros(n)
    if rate_per_min <= 0 and not extra_times:
        return out
    times: list[float] = list(extra_times or [])
    if rate_per_min > 0:
        t = float(rng.exponential(60.0 / rate_per_min))
        total = n / fps
        while t < total:
            times.append(t)
            t += 0.4 + float(rng.exponential(60.0 / rate_per_min))
    for t in times:
        d = float(rng.uniform(*dur_range))
        m = max(round(d * fps), 3)
        close = max(1, round(0.4 * m))
        k = np.concatenate([np.linspace(0.3, 1.0, close), np.linspace(1.0, 0.0, m - close + 1)[1:]])
        add_kernel(out, round(t * fps), k, 1.0, mode="max")
    return out
