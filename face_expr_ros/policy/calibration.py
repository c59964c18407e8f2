"""Output calibration: an affine map that gives the policy's frames the recorded listeners' spread.

A network trained by likelihood on many listeners averages them: its frames are narrower than
recorded ones (the shipped policy's head moves with 64 % of the recorded standard deviation, the
brows with 80 %) and their correlations are off. Statistical speech synthesis has the same
over-smoothing and corrects it after generation with a variance post-filter (global variance,
Toda & Tokuda, IEICE Trans. Inf. & Syst. E90-D(5), 2007). This module generalises that from
per-channel variances to the whole covariance: the map

    y = m_r + A (x - m_p),   A = C_p^{-1/2} (C_p^{1/2} C_r C_p^{1/2})^{1/2} C_p^{-1/2}

is the optimal-transport (2-Wasserstein) map from the Gaussian N(m_p, C_p) of the policy's own
frames to the Gaussian N(m_r, C_r) of the recorded listeners' (Knott & Smith, J. Optim. Theory
Appl. 43, 1984; Dowson & Landau, J. Multivar. Anal. 12, 1982): of all linear maps that turn the
first distribution into the second it moves frames the least. ``A`` is symmetric and positive
semi-definite; its eigenvalues are the gains along its principal directions.

Both Gaussians are fitted on the *training* split (``face-expr calibrate``): the policy played
closed loop with the runtime's defaults over the training conversations, against those
conversations' recorded listeners. Nothing is fitted on data that is evaluated.

By default the affine map covers the blendshapes but the eyelids; the head pose passes
unchanged (measured: a stretched head nods at the wrong times). The eyelids get their own map:
blinks are events, and recorded eyelid frames are two populations (open at rest, and a few per
cent closed), which no Gaussian describes. The policy's eyelids also rest partly closed; fitted
to them, the affine map shrank the eyelids so far that most blinks stopped crossing half closed:
3 blinks a minute left of 20 (docs/policy.md, "Output calibration"). The eyelids are instead
mapped quantile to quantile, ``y = F_r^{-1}(F_p(x))`` with ``F`` the two cumulative
distributions of eyelid closure (histogram matching; "quantile mapping" in the bias correction
of climate models, Panofsky & Brier, "Some Applications of Statistics to Meteorology", 1968):
monotone, so blinks stay where they are in time and the most closed frames stay the most closed
while the half-closed rest goes to open, and the distribution of closure, not just its first two
moments, becomes the recorded one. (A policy that closes its eyelids more often than the recorded
listeners keeps only its deepest closures as blinks.)

Safety: gains are capped (``max_gain``, default 3) so that a direction the policy hardly moves is
not blown up into noise, and every output is clamped to the expression space's limits. The
runtime feeds the network its *uncalibrated* frames as history, so the closed loop that the map
was fitted on is the closed loop that runs.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from face_expr_ros import expression as ex

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
DEFAULT_MAX_GAIN = 3.0
CALIBRATION_FILE = "calibration.npz"  # its name in a policy directory (model_dir.py)
_EYELIDS = list(ex.EYELIDS)  # an index list, for fancy indexing on the 30 Hz path
# The head is left out by default: stretched, its drift crosses the nod detector's threshold at
# random times (docs/policy.md, "Output calibration"). The eyelids have their quantile map.
FACE_CHANNELS: tuple[int, ...] = tuple(i for i in range(ex.N_BLENDSHAPES) if i not in ex.EYELIDS)
HEAD_CHANNELS: tuple[int, ...] = tuple(range(ex.N_BLENDSHAPES, ex.DIM))
QUANTILE_LEVELS = 1001  # knots of the eyelid map: every 0.1 % of frames, so a blink spans tens of them
# Channels whose variance is below this (std 1e-4) count as static: no direction is built on them.
STATIC_VARIANCE = 1e-8


class CalibrationError(ValueError):
    """A calibration that cannot be fitted or loaded; the text names the file or the field."""


def _psd_sqrt(c: F64) -> tuple[F64, F64, F64]:
    """Square root of a symmetric PSD matrix, with its eigenvalues (clipped at 0) and vectors."""
    w, v = np.linalg.eigh((c + c.T) / 2.0)
    w = np.clip(w, 0.0, None)
    return (v * np.sqrt(w)) @ v.T, w, v


def gaussian_transport(cov_from: ArrayLike, cov_to: ArrayLike, max_gain: float = DEFAULT_MAX_GAIN) -> F64:
    """The matrix ``A`` of the optimal-transport map between centred Gaussians (module doc), with
    its eigenvalues capped at ``max_gain``.

    Directions in which ``cov_from`` does not vary (eigenvalue below :data:`STATIC_VARIANCE`)
    cannot be stretched into anything: ``A`` is zero there, so frames keep the target mean along
    them (the map sends a constant to a constant).
    """
    c_p, c_r = np.asarray(cov_from, np.float64), np.asarray(cov_to, np.float64)
    if c_p.ndim != 2 or c_p.shape[0] != c_p.shape[1] or c_r.shape != c_p.shape:
        raise CalibrationError(f"covariances must be square and of one shape, got {c_p.shape} and {c_r.shape}")
    if not (np.isfinite(c_p).all() and np.isfinite(c_r).all()):
        raise CalibrationError("covariances contain NaN or inf")
    if not max_gain > 0:
        raise CalibrationError(f"max_gain must be > 0, got {max_gain}")
    root_p, w, v = _psd_sqrt(c_p)
    moving = w > STATIC_VARIANCE
    inv_root_p = (v[:, moving] / np.sqrt(w[moving])) @ v[:, moving].T
    middle, _, _ = _psd_sqrt(root_p @ c_r @ root_p)
    a = inv_root_p @ middle @ inv_root_p
    gains, vectors = np.linalg.eigh((a + a.T) / 2.0)
    return (vectors * np.clip(gains, 0.0, max_gain)) @ vectors.T


def quantile_knots(source: ArrayLike, target: ArrayLike, levels: int = QUANTILE_LEVELS) -> F32:
    """Knots (2, K) of the monotone map ``F_target^{-1}(F_source(x))`` (module doc): row 0 the
    source's quantiles, strictly increasing, row 1 the target's at the same levels.

    Where the source holds one value over several levels (a channel that rests at one level), that
    value maps to the mean of the target's quantiles over those levels.
    """
    x, y = np.asarray(source, np.float64).ravel(), np.asarray(target, np.float64).ravel()
    if x.size < 2 or y.size < 2:
        raise CalibrationError(f"a quantile map needs at least 2 values on each side, got {x.size} and {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise CalibrationError("values for a quantile map contain NaN or inf")
    q = np.linspace(0.0, 1.0, levels)
    # Deduplicated in float32, the precision the knots are stored and applied in.
    xs, inverse = np.unique(np.quantile(x, q).astype(np.float32), return_inverse=True)
    ys = np.bincount(inverse, weights=np.quantile(y, q)) / np.bincount(inverse)
    return np.stack([xs, ys]).astype(np.float32)


@dataclass
class OutputCalibration:
    """``y = clamp(target_mean + matrix (x - source_mean))`` on (55,) expression frames, then the
    eyelids through ``eyelid_knots`` (2, K) by linear interpolation, if given."""

    source_mean: F32
    target_mean: F32
    matrix: F32
    meta: dict[str, Any] = field(default_factory=dict)  # how and on what it was fitted
    eyelid_knots: F32 | None = None

    def __post_init__(self) -> None:
        d = ex.DIM
        for name, value, shape in (("source_mean", self.source_mean, (d,)), ("target_mean", self.target_mean, (d,)),
                                   ("matrix", self.matrix, (d, d))):
            arr = np.asarray(value, np.float32)
            if arr.shape != shape:
                raise CalibrationError(f"calibration field {name!r} has shape {arr.shape}, expected {shape}")
            if not np.isfinite(arr).all():
                raise CalibrationError(f"calibration field {name!r} contains NaN or inf")
            setattr(self, name, arr)
        if self.eyelid_knots is not None:
            knots = np.asarray(self.eyelid_knots, np.float32)
            if knots.ndim != 2 or knots.shape[0] != 2 or knots.shape[1] < 2:
                raise CalibrationError(f"calibration field 'eyelid_knots' has shape {knots.shape}, "
                                       "expected (2, K >= 2)")
            if not np.isfinite(knots).all():
                raise CalibrationError("calibration field 'eyelid_knots' contains NaN or inf")
            if not (np.diff(knots[0]) > 0).all():
                raise CalibrationError("calibration field 'eyelid_knots': source quantiles must increase strictly")
            if (self.matrix[_EYELIDS] != np.eye(ex.DIM, dtype=np.float32)[_EYELIDS]).any():
                raise CalibrationError("calibration: the eyelids have a quantile map and must pass the affine map "
                                       "unchanged")
            self.eyelid_knots = knots
        self._offset = (self.target_mean - self.matrix @ self.source_mean).astype(np.float32)

    @classmethod
    def fit(cls, mean_from: ArrayLike, cov_from: ArrayLike, mean_to: ArrayLike, cov_to: ArrayLike,
            max_gain: float = DEFAULT_MAX_GAIN, channels: Sequence[int] = FACE_CHANNELS,
            meta: dict[str, Any] | None = None, eyelids_from: ArrayLike | None = None,
            eyelids_to: ArrayLike | None = None) -> OutputCalibration:
        """The capped transport map from the Gaussian (``mean_from``, ``cov_from``) of generated
        frames to (``mean_to``, ``cov_to``) of recorded ones, on ``channels`` (the others pass
        unchanged; by default the blendshapes but the eyelids, not the head); with eyelid closure
        values of generated (``eyelids_from``) and recorded (``eyelids_to``) frames, the eyelids'
        quantile map too."""
        chosen = np.zeros(ex.DIM, bool)
        chosen[np.asarray(channels, int)] = True
        if not chosen.any():
            raise CalibrationError("no channels to calibrate")
        if (eyelids_from is None) != (eyelids_to is None):
            raise CalibrationError("the eyelid quantile map needs both eyelids_from and eyelids_to")
        knots = None
        if eyelids_from is not None:
            if chosen[_EYELIDS].any():
                raise CalibrationError("the eyelids cannot have both the affine map and the quantile map")
            knots = quantile_knots(eyelids_from, eyelids_to)
        block = np.ix_(chosen, chosen)
        c_p, c_r = np.asarray(cov_from, np.float64), np.asarray(cov_to, np.float64)
        matrix = np.eye(ex.DIM)
        matrix[block] = gaussian_transport(c_p[block], c_r[block], max_gain)
        source, target = np.asarray(mean_from, np.float64), np.asarray(mean_from, np.float64).copy()
        target[chosen] = np.asarray(mean_to, np.float64)[chosen]
        gains = np.clip(np.linalg.eigvalsh(matrix[block]), 0.0, None)
        info = {"max_gain": max_gain, "largest_gain": float(gains.max()), "smallest_gain": float(gains.min()),
                "channels": [ex.EXPRESSION_NAMES[i] for i in np.flatnonzero(chosen)],
                "quantile_mapped": [ex.EXPRESSION_NAMES[i] for i in ex.EYELIDS] if knots is not None else [],
                **(meta or {})}
        return cls(source.astype(np.float32), target.astype(np.float32), matrix.astype(np.float32), info, knots)

    def apply(self, frames: ArrayLike) -> F32:
        """Map (55,) or (T, 55) frames and clamp them to the expression space's limits."""
        x = np.asarray(frames, np.float32)
        if x.shape[-1] != ex.DIM:
            raise CalibrationError(f"frames have {x.shape[-1]} channels, expected {ex.DIM}")
        y = x @ self.matrix.T + self._offset
        if self.eyelid_knots is not None:
            y[..., _EYELIDS] = np.interp(x[..., _EYELIDS], self.eyelid_knots[0], self.eyelid_knots[1])
        return ex.clamp(y)

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:  # a file object: np.savez would append .npz to a bare name
            optional = {} if self.eyelid_knots is None else {"eyelid_knots": self.eyelid_knots}
            np.savez(f, source_mean=self.source_mean, target_mean=self.target_mean, matrix=self.matrix,
                     meta=np.array(json.dumps(self.meta, sort_keys=True)), **optional)

    @classmethod
    def load(cls, path: str | Path) -> OutputCalibration:
        p = Path(path)
        try:
            with np.load(p, allow_pickle=False) as z:
                missing = [k for k in ("source_mean", "target_mean", "matrix", "meta") if k not in z.files]
                if missing:
                    raise CalibrationError(f"{p}: missing field(s) {missing}")
                arrays = {k: z[k] for k in ("source_mean", "target_mean", "matrix", "eyelid_knots") if k in z.files}
                meta = json.loads(str(z["meta"]))
        except CalibrationError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise CalibrationError(f"{p}: not a readable calibration file ({err})") from None
        try:
            return cls(**arrays, meta=meta)
        except CalibrationError as err:
            raise CalibrationError(f"{p}: {err}") from None
