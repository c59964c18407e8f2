"""The action tokenizer: 55-d expression frames and H-frame chunks <-> discrete tokens.

Per-dimension binning follows RT-2 (Brohan et al., 2023) and OpenVLA (Kim et al., 2024): each
dimension is cut into ``n_bins`` (256) *uniform* bins between a low and a high percentile of the
training actions (0.1th and 99.9th: wider than their 1st–99th, because blinks live in the top
1 % of eyelid values; see :meth:`ActionTokenizer.fit`); values outside are clipped into the end
bins, and a bin decodes to its centre ``lo + (b + 1/2) (hi - lo) / n_bins``. A dimension that
never moves in the training data (tongueOut is 0 in most corpora) has ``hi == lo``: it is flagged
constant, always encodes to bin 0 and always decodes to its constant, so no bin width of zero
ever divides.

A chunk of ``H`` frames is not stored as ``H x 55`` independent bins (that yields jittery,
incoherent samples; see ``docs/policy.md``) but as a piecewise-linear trajectory through
``M`` keyframes at frames ``t_m = round(m (H - 1) / (M - 1))`` (0, 2, 4, 5, 7 for H = 8, M = 5):

* ``base`` (55,): the absolute bin of keyframe 0 (the chunk's first frame), 256 classes;
* ``deltas`` (M - 1, 55): the step, in bins, from keyframe ``m - 1`` to keyframe ``m``, chosen
  from a symmetric, roughly logarithmic vocabulary ``DELTA_STEPS`` (0, +-1, +-2, ... +-255;
  33 classes): fine steps for slow drifts, coarse ones for a blink.

Keyframe bins are ``k_0 = base``, ``k_m = clip(k_{m-1} + step[deltas_m], 0, n_bins - 1)``; frames
between keyframes are linear interpolations of the decoded keyframe values. Encoding is greedy
and sequential (each step is chosen from the *reconstructed* previous keyframe), so quantisation
errors never accumulate. Everything that defines the token <-> value map is in the JSON file and
in :attr:`ActionTokenizer.sha256`, which a model stores to check that it is paired correctly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from face_expr_ros import expression as ex

FORMAT = "face_expr_ros.action_tokenizer"
VERSION = 1
N_BINS = 256


def _delta_steps() -> tuple[int, ...]:
    # Magnitudes 2^(k/2) rounded, k = 0..16: 1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 91, 128,
    # 181, 255. A step error is then at most ~17 % of the step, i.e. small moves are exact and
    # large ones (a blink crossing most of the range) are still reachable in one keyframe.
    mags = sorted({min(round(2 ** (k / 2)), N_BINS - 1) for k in range(17)})
    return tuple([-m for m in reversed(mags)] + [0] + mags)


DELTA_STEPS: tuple[int, ...] = _delta_steps()


class TokenizerError(ValueError):
    """A tokenizer file or array that is malformed; the text names the file or field."""


@dataclass(frozen=True, eq=False)
class ActionTokenizer:
    """Percentile-uniform bins per dimension plus the keyframe chunk codec (see module doc).

    Immutable; derived arrays are computed once (``cached_property``) because ``decode_chunk``
    runs on the 30 Hz path. Compare tokenizers by :attr:`sha256`.
    """

    lo: NDArray[np.float32]  # (55,) value at the lower edge of bin 0 (0.1th percentile)
    hi: NDArray[np.float32]  # (55,) value at the upper edge of the last bin (99.9th percentile)
    horizon: int = 8
    n_keyframes: int = 5
    n_bins: int = N_BINS
    delta_steps: tuple[int, ...] = DELTA_STEPS

    def __post_init__(self) -> None:
        lo = np.asarray(self.lo, np.float32).reshape(-1)
        hi = np.asarray(self.hi, np.float32).reshape(-1)
        if lo.shape != (ex.DIM,) or hi.shape != (ex.DIM,):
            raise TokenizerError(f"tokenizer 'lo'/'hi' must have {ex.DIM} values, got {lo.shape} and {hi.shape}")
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()) or (hi < lo).any():
            raise TokenizerError("tokenizer 'lo'/'hi' must be finite with hi >= lo per dimension")
        if self.n_bins < 2 or self.horizon < 2 or not 2 <= self.n_keyframes <= self.horizon:
            raise TokenizerError(f"bad tokenizer sizes: n_bins={self.n_bins}, horizon={self.horizon}, "
                                 f"n_keyframes={self.n_keyframes}")
        if 0 not in self.delta_steps or list(self.delta_steps) != sorted(set(self.delta_steps)):
            raise TokenizerError("tokenizer 'delta_steps' must be sorted, unique and contain 0")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "delta_steps", tuple(int(s) for s in self.delta_steps))

    # ----------------------------------------------------------------- fitting and sizes
    @classmethod
    def fit(cls, actions: ArrayLike, *, horizon: int = 8, n_keyframes: int = 5, n_bins: int = N_BINS,
            lower_pct: float = 0.1, upper_pct: float = 99.9) -> ActionTokenizer:
        """Bin edges from the ``lower_pct`` / ``upper_pct`` percentiles of ``actions`` (N, 55).

        The default is 0.1–99.9, not RT-2's 1–99: a listener's eyes are closed in under 1 % of
        frames, so with 1–99 the eyelid range ends at half-closed and no model could ever blink.
        """
        arr = np.asarray(actions, np.float64).reshape(-1, ex.DIM)
        if arr.shape[0] == 0 or not np.isfinite(arr).all():
            raise TokenizerError("cannot fit a tokenizer on no actions or on NaN/inf actions")
        lo, hi = np.percentile(arr, [lower_pct, upper_pct], axis=0)
        # A range narrower than float32 resolution is a constant dimension, not a tiny real one.
        hi = np.where(hi - lo < 1e-6, lo, hi)
        return cls(lo.astype(np.float32), hi.astype(np.float32), horizon, n_keyframes, n_bins)

    @cached_property
    def constant(self) -> NDArray[np.bool_]:
        return self.hi <= self.lo

    @cached_property
    def width(self) -> NDArray[np.float32]:
        """(55,) bin width per dimension (0 for constant dimensions)."""
        return ((self.hi - self.lo) / self.n_bins).astype(np.float32)

    @cached_property
    def centers(self) -> NDArray[np.float32]:
        """(55, n_bins) decoded value of every bin."""
        return (self.lo[:, None] + (np.arange(self.n_bins) + 0.5)[None, :] * self.width[:, None]).astype(np.float32)

    @property
    def n_deltas(self) -> int:
        return len(self.delta_steps)

    @property
    def zero_delta(self) -> int:
        return self.delta_steps.index(0)

    @cached_property
    def keyframe_times(self) -> NDArray[np.int64]:
        """Keyframe frame indices, evenly spread and rounded to whole frames (0, 2, 4, 5, 7 for H=8, M=5).

        Whole frames make the codec a fixed point: a decoded chunk encodes to the same tokens.
        """
        return np.rint(np.linspace(0.0, self.horizon - 1, self.n_keyframes)).astype(np.int64)

    @cached_property
    def interpolation(self) -> NDArray[np.float32]:
        """(H, M) matrix taking keyframe values to frame values (piecewise-linear)."""
        eye = np.eye(self.n_keyframes)
        t = np.arange(self.horizon, dtype=np.float64)
        rows = [np.interp(t, self.keyframe_times, eye[m]) for m in range(self.n_keyframes)]
        return np.stack(rows, axis=1).astype(np.float32)

    # ----------------------------------------------------------------- frames
    def bin_coordinate(self, values: ArrayLike) -> NDArray[np.float64]:
        """Continuous bin coordinate of values (…, 55): bin b's centre is at b (constant dims: 0)."""
        v = np.asarray(values, np.float64)
        width = np.where(self.constant, 1.0, self.width.astype(np.float64))
        coord = (v - self.lo) / width - 0.5
        return np.where(self.constant, 0.0, np.clip(coord, 0.0, self.n_bins - 1))

    def encode(self, values: ArrayLike) -> NDArray[np.int64]:
        """Bins (…, 55) of frames (…, 55); values beyond the percentiles go to the end bins."""
        v = np.asarray(values, np.float64)
        if v.shape[-1:] != (ex.DIM,):
            raise TokenizerError(f"expected frames with {ex.DIM} values on the last axis, got shape {v.shape}")
        if not np.isfinite(v).all():
            raise TokenizerError("cannot encode NaN/inf action values")
        return np.rint(self.bin_coordinate(v)).astype(np.int64)

    def decode(self, bins: ArrayLike) -> NDArray[np.float32]:
        """Frames (…, 55) from bins (…, 55), or from continuous bin coordinates."""
        b = np.asarray(bins, np.float64)
        values = self.lo + (b + 0.5) * self.width
        return np.where(self.constant, self.lo, values).astype(np.float32)

    # ----------------------------------------------------------------- chunks
    def encode_chunk(self, chunk: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(base (…, 55), deltas (…, M-1, 55)) of chunks (…, H, 55); see the module doc."""
        c = np.asarray(chunk, np.float64)
        if c.shape[-2:] != (self.horizon, ex.DIM):
            raise TokenizerError(f"expected chunks of shape (..., {self.horizon}, {ex.DIM}), got {c.shape}")
        if not np.isfinite(c).all():
            raise TokenizerError("cannot encode a chunk with NaN/inf values")
        # Keyframe values: the chunk sampled (linearly) at the keyframe times.
        keys = c[..., self.keyframe_times, :]  # (…, M, 55)
        coords = self.bin_coordinate(keys)
        steps = np.asarray(self.delta_steps, np.float64)
        base = np.rint(coords[..., 0, :]).astype(np.int64)
        recon = base.copy()
        deltas = []
        for m in range(1, self.n_keyframes):
            # Nearest step to the target *from the reconstruction*, among steps that stay in range
            # (clipping would otherwise make several tokens decode to the same chunk).
            want = coords[..., m, :] - recon
            reach = recon[..., None] + steps
            cost = np.abs(want[..., None] - steps) + np.where((reach < 0) | (reach > self.n_bins - 1), 1e9, 0.0)
            d = np.argmin(cost, axis=-1)
            d = np.where(self.constant, self.zero_delta, d)
            recon = np.clip(recon + steps[d].astype(np.int64), 0, self.n_bins - 1)
            deltas.append(d)
        return base, np.stack(deltas, axis=-2).astype(np.int64)

    def keyframe_bins(self, base: ArrayLike, deltas: ArrayLike) -> NDArray[np.int64]:
        """(…, M, 55) keyframe bins from tokens."""
        b = np.asarray(base, np.int64)
        d = np.asarray(deltas, np.int64)
        steps = np.asarray(self.delta_steps, np.int64)
        keys = [b]
        for m in range(self.n_keyframes - 1):
            keys.append(np.clip(keys[-1] + steps[d[..., m, :]], 0, self.n_bins - 1))
        return np.stack(keys, axis=-2)

    def decode_chunk(self, base: ArrayLike, deltas: ArrayLike) -> NDArray[np.float32]:
        """Chunks (…, H, 55) from tokens: decoded keyframes, linearly interpolated, clamped."""
        keys = self.decode(self.keyframe_bins(base, deltas))  # (…, M, 55)
        frames = np.einsum("hm,...md->...hd", self.interpolation, keys)
        return ex.clamp(frames)

    # ----------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "n_bins": self.n_bins, "horizon": self.horizon,
            "n_keyframes": self.n_keyframes, "delta_steps": list(self.delta_steps),
            "names": list(ex.EXPRESSION_NAMES),
            # float(np.float32) -> the exact float32 value as a Python float: round-trips exactly.
            "lo": [float(x) for x in self.lo], "hi": [float(x) for x in self.hi],
        }

    @cached_property
    def sha256(self) -> str:
        """Content hash of everything that defines the token <-> value map."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {**self.to_dict(), "sha256": self.sha256}
        path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ActionTokenizer:
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"tokenizer file not found: {path}")
        try:
            payload = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise TokenizerError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise TokenizerError(f"{path}: field 'format' is not {FORMAT!r}; not an action tokenizer")
        if payload.get("version") != VERSION:
            raise TokenizerError(f"{path}: field 'version' is {payload.get('version')}, expected {VERSION}")
        if payload.get("names") != list(ex.EXPRESSION_NAMES):
            raise TokenizerError(f"{path}: field 'names' differs from the expression space")
        try:
            tok = cls(np.array(payload["lo"], np.float32), np.array(payload["hi"], np.float32),
                      int(payload["horizon"]), int(payload["n_keyframes"]), int(payload["n_bins"]),
                      tuple(payload["delta_steps"]))
        except KeyError as err:
            raise TokenizerError(f"{path}: missing field {err}") from None
        except TokenizerError as err:
            raise TokenizerError(f"{path}: {err}") from None
        if payload.get("sha256") != tok.sha256:
            raise TokenizerError(f"{path}: field 'sha256' does not match the content (edited or corrupt file)")
        return tok
