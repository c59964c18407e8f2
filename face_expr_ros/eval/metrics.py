r"""Listener-generation metrics: each a small function over (T, D) expression tracks.

All tracks are frames of the expression space (:mod:`face_expr_ros.expression`, D = 55: 52
blendshape weights in [0, 1] and 3 head angles in radians); distances are taken in those raw
units, as the references take them in their own coefficient spaces. ``g`` is a generated
listener track, ``l`` the ground-truth (GT) listener, ``s`` the speaker, all (T, D) at 30 Hz.

References:

* [L2L] Ng, Joo, Hu, Li, Darrell, Kanazawa, Ginosar, "Learning to Listen: Modeling
  Non-Deterministic Dyadic Facial Motion", CVPR 2022: L2, FD, paired FD, variation,
  SI diversity, residual PCC.
* [ELP] Ng, Subramanian, Klein, Kanazawa, Darrell, Ginosar, "Can Language Models Learn to
  Listen?", ICCV 2023: the same set, residual PCC written rPCC.
* [FID] Heusel, Ramsauer, Unterthiner, Nessler, Hochreiter, "GANs Trained by a Two Time-Scale
  Update Rule Converge to a Local Nash Equilibrium", NeurIPS 2017 (the Fréchet distance of
  two Gaussians; Dowson & Landau 1982).
* [REACT] Song, Spitale, Luo, Bal, Gunes, "REACT2023: the first Multi-modal Multiple
  Appropriate Facial Reaction Generation Challenge", ACM MM 2023 (and REACT 2024):
  FRCorr, FRDist, FRDiv, FRVar, FRDvs, FRSyn.
* [CCC] Lin, "A concordance correlation coefficient to evaluate reproducibility",
  Biometrics 45(1), 1989.
* [DTW] Sakoe & Chiba, "Dynamic programming algorithm optimization for spoken word
  recognition", IEEE TASSP 26(1), 1978.

Functions of one conversation return a float; dataset-level quantities (FD, P-FD, FRDvs) are
computed from running sums (:class:`GaussianStats`, :class:`SpreadStats`), so an evaluation
never holds every track in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from face_expr_ros.eval.affect import valence
from face_expr_ros.expression import FPS

F64 = NDArray[np.float64]
_EPS = 1e-12
# A channel whose standard deviation over a clip is below this does not move: its
# correlation with anything is undefined (about 1e-3 of one blendshape's visible change).
STATIC_STD = 1e-6


def _track(x: ArrayLike, name: str = "track") -> F64:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a (T, D) array, got shape {arr.shape}")
    return arr


def _pair(a: ArrayLike, b: ArrayLike) -> tuple[F64, F64]:
    x, y = _track(a, "first track"), _track(b, "second track")
    if x.shape != y.shape:
        raise ValueError(f"tracks differ in shape: {x.shape} vs {y.shape}")
    return x, y


# ----------------------------------------------------------------------------- L2L / ELP
def l2(generated: ArrayLike, ground_truth: ArrayLike) -> float:
    r"""Mean per-frame Euclidean distance [L2L]: ``L2 = (1/T) sum_t ||g_t - l_t||_2``.

    Lower is better; 0 only for the GT itself.
    """
    g, l_ = _pair(generated, ground_truth)
    return float(np.linalg.norm(g - l_, axis=1).mean())


def frechet_distance(mu1: ArrayLike, cov1: ArrayLike, mu2: ArrayLike, cov2: ArrayLike) -> float:
    r"""Fréchet (2-Wasserstein) distance of two Gaussians [FID]:

    ``FD = ||mu1 - mu2||^2 + Tr(C1 + C2 - 2 (C1 C2)^{1/2})``.

    ``Tr (C1 C2)^{1/2}`` is computed as ``sum_i sqrt(lambda_i)`` with ``lambda_i`` the eigenvalues
    of the symmetric PSD matrix ``C1^{1/2} C2 C1^{1/2}`` (same spectrum as ``C1 C2``): unlike a
    general ``sqrtm`` it stays real for the singular covariances of channels that never move
    (e.g. tongueOut). Negative eigenvalues from rounding are clipped to 0.
    """
    m1, m2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    c1, c2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    w, v = np.linalg.eigh((c1 + c1.T) / 2.0)
    root1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    mid = root1 @ c2 @ root1
    lam = np.clip(np.linalg.eigvalsh((mid + mid.T) / 2.0), 0.0, None)
    value = float(np.sum((m1 - m2) ** 2) + np.trace(c1) + np.trace(c2) - 2.0 * np.sum(np.sqrt(lam)))
    return max(value, 0.0)


class GaussianStats:
    """Running mean and covariance of frames (sums of x and x x^T), for FD over a whole split."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.sum = np.zeros(dim)
        self.outer = np.zeros((dim, dim))

    def update(self, frames: ArrayLike) -> GaussianStats:
        x = _track(frames, "frames")
        self.n += len(x)
        self.sum += x.sum(axis=0)
        self.outer += x.T @ x
        return self

    def merge(self, other: GaussianStats) -> GaussianStats:
        self.n += other.n
        self.sum += other.sum
        self.outer += other.outer
        return self

    @property
    def mean(self) -> F64:
        return self.sum / max(self.n, 1)

    @property
    def cov(self) -> F64:
        """Maximum-likelihood covariance (divides by n; the 1/(n-1) difference is immaterial here)."""
        mu = self.mean
        return self.outer / max(self.n, 1) - np.outer(mu, mu)


def fd_terms(mu1: ArrayLike, cov1: ArrayLike, mu2: ArrayLike, cov2: ArrayLike) -> dict[str, float]:
    r"""Where an FD comes from: :func:`frechet_distance` of (``mu1``, ``cov1``) (generated) to
    (``mu2``, ``cov2``) (reference), split into parts, and with parts of the generated Gaussian
    replaced by the reference's.

    * ``fd``: the distance; ``mean``: ``||mu1 - mu2||^2``; ``covariance``: the rest, the trace term.
    * ``at_reference_spread``: FD after rescaling every generated channel to the reference's
      standard deviation, ``C1' = D C1 D`` with ``D = diag(sigma2 / sigma1)`` (the generated
      correlations and means kept). What is left is the cost of the correlations and the means;
      ``fd - at_reference_spread`` is what the channels' spreads cost.
    * ``at_reference_correlation``: FD with the reference's correlation matrix and the generated
      standard deviations and means, ``C1' = S1 R2 S1``: ``fd - at_reference_correlation`` is
      what the correlations between channels cost.

    A channel that does not move in one of the two (sigma below :data:`STATIC_STD`) is left as it
    is. The two replacements are not additive: spreads and correlations interact in the trace
    term. (The decomposition of the tenth and thirteenth rounds in benchmarks/RESULTS.md.)
    """
    m1, m2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    c1, c2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    s1, s2 = np.sqrt(np.clip(np.diag(c1), 0.0, None)), np.sqrt(np.clip(np.diag(c2), 0.0, None))
    moving = (s1 > STATIC_STD) & (s2 > STATIC_STD)
    gain = np.where(moving, s2 / np.where(moving, s1, 1.0), 1.0)
    r2 = c2 / np.outer(np.where(s2 > STATIC_STD, s2, 1.0), np.where(s2 > STATIC_STD, s2, 1.0))
    with_r2 = np.where(np.outer(moving, moving), r2 * np.outer(s1, s1), c1)
    total = frechet_distance(m1, c1, m2, c2)
    mean = float(np.sum((m1 - m2) ** 2))
    return {"fd": total, "mean": mean, "covariance": total - mean,
            "at_reference_spread": frechet_distance(m1, c1 * np.outer(gain, gain), m2, c2),
            "at_reference_correlation": frechet_distance(m1, with_r2, m2, c2)}


def within_between(runs: Sequence[ArrayLike]) -> tuple[F64, F64]:
    r"""Covariance of frames pooled over ``runs`` (each (T_r, D)), split exactly into within and between runs:

    ``C = W + B``, ``W = sum_r n_r C_r / N`` (each run's own covariance about its mean, weighted
    by its frames), ``B = sum_r n_r (mu_r - mu)(mu_r - mu)^T / N`` (how far the runs' means lie
    apart). The law of total covariance. For listeners, ``B`` is who the listener is and what
    the conversation is about; ``W`` is how the face moves within one conversation. FD pools all
    frames and cannot tell the two apart; this can.
    """
    xs = [_track(r, "run") for r in runs]
    if not xs:
        raise ValueError("within_between needs at least one run")
    n = np.array([len(x) for x in xs], np.float64)
    means = np.stack([x.mean(axis=0) for x in xs])
    mu = (n[:, None] * means).sum(axis=0) / n.sum()
    within = sum(((x - m).T @ (x - m) for x, m in zip(xs, means)), np.zeros((xs[0].shape[1],) * 2)) / n.sum()
    d = means - mu
    between = (n[:, None] * d).T @ d / n.sum()
    return within, between


def fd(generated_frames: ArrayLike, ground_truth_frames: ArrayLike) -> float:
    r"""FD [L2L]: Fréchet distance between Gaussian fits of generated and GT frame distributions.

    Rows are frames pooled over all conversations (and samples); see :func:`frechet_distance`.
    Lower is better.
    """
    a = GaussianStats(_track(generated_frames).shape[1]).update(generated_frames)
    b = GaussianStats(_track(ground_truth_frames).shape[1]).update(ground_truth_frames)
    return frechet_distance(a.mean, a.cov, b.mean, b.cov)


def paired_frames(speaker: ArrayLike, listener: ArrayLike) -> F64:
    """(T, 2D) frames ``[s_t, l_t]``: the joint speaker-listener state that P-FD compares."""
    s, x = _pair(speaker, listener)
    return np.concatenate([s, x], axis=1)


def paired_fd(speaker: ArrayLike, generated: ArrayLike, ground_truth: ArrayLike) -> float:
    r"""P-FD [L2L]: FD between the distributions of ``[s_t, g_t]`` and ``[s_t, l_t]``.

    FD on frames only checks that generated frames look like listener frames; pairing with
    the speaker also checks that they appear with the right speaker frames. Lower is better.
    """
    return fd(paired_frames(speaker, generated), paired_frames(speaker, ground_truth))


def temporal_variance(track: ArrayLike) -> float:
    r"""Mean over channels of the variance over time: ``(1/D) sum_d Var_t(x_{t,d})``.

    This is the "variation" of [L2L] and the FRVar of [REACT] (the same definition): a
    collapsed, motionless model scores near 0. Compare with the GT's value rather than
    maximising it.
    """
    return float(_track(track).var(axis=0).mean())


def variation(generated: ArrayLike) -> float:
    """Variation [L2L]: :func:`temporal_variance` of one generated sequence (compare with GT)."""
    return temporal_variance(generated)


def si_diversity(samples: Sequence[ArrayLike]) -> float:
    r"""SI diversity [L2L]: mean pairwise L2 between K samples generated for the same input,

    ``SI-Div = (2 / (K (K-1))) sum_{i<j} (1/T) sum_t ||g^i_t - g^j_t||_2``.

    0 for a deterministic model; needs K >= 2 (NaN otherwise).
    """
    tracks = [_track(x) for x in samples]
    if len(tracks) < 2:
        return float("nan")
    return float(np.mean([l2(a, b) for a, b in combinations(tracks, 2)]))


def _standardise(x: F64) -> tuple[F64, NDArray[np.bool_]]:
    """Columns scaled to zero mean, unit variance; the mask marks columns that move."""
    centred = x - x.mean(axis=0)
    sd = x.std(axis=0)
    moving = sd > STATIC_STD
    return centred / np.where(moving, sd, 1.0), moving


def channel_pcc(a: ArrayLike, b: ArrayLike) -> F64:
    """(D,) Pearson correlation over time of each channel of ``a`` with the same channel of ``b``.

    A channel that does not move in either track has correlation 0 (no linear relationship
    can be seen), not NaN.
    """
    x, y = _pair(a, b)
    zx, mx = _standardise(x)
    zy, my = _standardise(y)
    return np.where(mx & my, (zx * zy).mean(axis=0), 0.0)


def speaker_listener_pcc(speaker: ArrayLike, listener: ArrayLike) -> float:
    """Mean over the speaker's moving channels of the per-channel Pearson correlation speaker vs listener."""
    s = _track(speaker, "speaker")
    moving = s.std(axis=0) > STATIC_STD
    if not moving.any():
        return 0.0
    return float(channel_pcc(s, listener)[moving].mean())


def rpcc(speaker: ArrayLike, generated: ArrayLike, ground_truth: ArrayLike) -> float:
    r"""Residual PCC [L2L, ELP]: ``|PCC(s, g) - PCC(s, l)|``.

    ``PCC(s, x)`` is :func:`speaker_listener_pcc` (per-channel Pearson correlation of speaker
    and listener expression over time, averaged over the channels in which the speaker moves).
    It asks for the *same amount* of speaker-listener coupling as in the real pair, not for the
    most. Lower is better.
    """
    return abs(speaker_listener_pcc(speaker, generated) - speaker_listener_pcc(speaker, ground_truth))


def affect_l2(generated: ArrayLike, ground_truth: ArrayLike) -> float:
    r"""Affect L2: RMS distance of the valence curves, ``sqrt((1/T) sum_t (v(g_t) - v(l_t))^2)``.

    ``v`` is :func:`face_expr_ros.eval.affect.valence` (in [-1, 1]). Reports multiply it by
    100, as [ELP] reports its affect errors x100. Lower is better.
    """
    g, l_ = _pair(generated, ground_truth)
    return float(np.sqrt(np.mean((valence(g) - valence(l_)) ** 2)))


# ----------------------------------------------------------------------------- REACT
def ccc(a: ArrayLike, b: ArrayLike) -> float:
    r"""Concordance correlation [CCC], averaged over channels:

    ``CCC_d = 2 cov(x_d, y_d) / (var x_d + var y_d + (mean x_d - mean y_d)^2)``.

    1 for identical tracks, 0 for uncorrelated ones, penalises offsets and scale unlike
    Pearson. Channels where both tracks are the same constant (denominator 0) are left out of
    the mean; NaN if no channel is left.
    """
    x, y = _pair(a, b)
    mx, my = x.mean(axis=0), y.mean(axis=0)
    cov = ((x - mx) * (y - my)).mean(axis=0)
    den = x.var(axis=0) + y.var(axis=0) + (mx - my) ** 2
    ok = den > _EPS
    if not ok.any():
        return float("nan")
    return float((2.0 * cov[ok] / den[ok]).mean())


def frcorr(generated: ArrayLike, appropriate: Sequence[ArrayLike]) -> float:
    r"""FRCorr [REACT]: CCC with the closest appropriate real reaction, ``max_a CCC(g, a)``.

    Higher is better. How the appropriate set is formed is the caller's choice (see
    ``docs/evaluation.md``).
    """
    if not appropriate:
        raise ValueError("frcorr needs at least one appropriate reaction")
    values = [ccc(generated, a) for a in appropriate]
    finite = [v for v in values if np.isfinite(v)]
    return max(finite) if finite else float("nan")


def downsample(track: ArrayLike, factor: int) -> F64:
    """Mean over consecutive blocks of ``factor`` frames (a trailing partial block is dropped)."""
    x = _track(track)
    if factor <= 1:
        return x
    n = len(x) // factor
    return x[: n * factor].reshape(n, factor, x.shape[1]).mean(axis=1)


def dtw(a: ArrayLike, b: ArrayLike) -> float:
    r"""Dynamic time warping cost [DTW] with Euclidean frame distance ``c(i, j) = ||a_i - b_j||_2``:

    ``D(i, j) = c(i, j) + min(D(i-1, j-1), D(i-1, j), D(i, j-1))``, ``D(0, 0) = c(0, 0)``; the
    result is ``D(n-1, m-1)``, the summed cost of the best monotone alignment of all frames.

    Computed along anti-diagonals (every cell of one depends only on the two before), so each
    step is one vectorised numpy operation: O(n m) work in n + m steps.
    """
    x, y = _track(a), _track(b)
    n, m = len(x), len(y)
    if n == 0 or m == 0:
        raise ValueError("dtw needs non-empty tracks")
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    cost = np.sqrt(np.clip(sq, 0.0, None))
    # Skewed layout: row k holds anti-diagonal k indexed by i (cell (i, k - i)); inf off the matrix,
    # so the recurrence needs no bounds checks and each step is three whole-row operations.
    skew = np.full((n + m - 1, n + 1), np.inf)
    i = np.arange(n)
    for_rows = i[None, :] + np.arange(m)[:, None]  # k = i + j for every (j, i)
    skew[for_rows.ravel(), np.tile(i, m) + 1] = cost.T.ravel()
    # Column 0 is a permanent inf "row -1", so D(i-1, .) of row i = 0 is read as inf.
    prev2 = np.full(n + 1, np.inf)
    prev1 = np.full(n + 1, np.inf)
    prev1[1] = cost[0, 0]
    best = np.empty(n)
    for k in range(1, n + m - 1):
        np.minimum(prev1[:-1], prev2[:-1], out=best)  # D(i-1, j) and D(i-1, j-1)
        np.minimum(best, prev1[1:], out=best)  # D(i, j-1)
        cur = skew[k]
        cur[1:] += best
        prev2, prev1 = prev1, cur
    return float(prev1[n])


def frdist(generated: ArrayLike, appropriate: Sequence[ArrayLike], factor: int = 3) -> float:
    r"""FRDist [REACT]: DTW distance to the closest appropriate real reaction, per frame:

    ``FRDist = min_a DTW(g↓, a↓) / |g↓|``, ``↓`` = mean over blocks of ``factor`` frames
    (3: 30 Hz -> 10 Hz). REACT sums unnormalised DTW over fixed 750-frame clips; our clips
    differ in length, so the cost is divided by the number of (downsampled) frames. Lower is better.
    """
    if not appropriate:
        raise ValueError("frdist needs at least one appropriate reaction")
    g = downsample(generated, factor)
    return min(dtw(g, downsample(a, factor)) for a in appropriate) / max(len(g), 1)


def mean_pairwise_mse(tracks: Sequence[ArrayLike]) -> float:
    r"""``(2 / (K (K-1))) sum_{i<j} mean_{t,d} (x^i_{t,d} - x^j_{t,d})^2`` over K equal-shape tracks.

    Uses ``mean_{i != j} ||x_i - x_j||^2 = 2K/(K-1) (mean_i ||x_i||^2 - ||mean_i x_i||^2)``,
    O(K) instead of O(K^2). NaN for K < 2.
    """
    arr = np.stack([_track(t) for t in tracks]) if len(tracks) else np.zeros((0, 0, 0))
    k = len(arr)
    if k < 2:
        return float("nan")
    flat = arr.reshape(k, -1)
    spread = (flat**2).sum(1).mean() - (flat.mean(0) ** 2).sum()
    return float(max(2.0 * k / (k - 1) * spread, 0.0) / flat.shape[1])


def frdiv(samples: Sequence[ArrayLike]) -> float:
    """FRDiv [REACT]: mean pairwise MSE among K reactions generated for one speaker behaviour.

    0 for a deterministic model; NaN for K < 2. Higher means more diverse.
    """
    return mean_pairwise_mse(samples)


def frvar(samples: Sequence[ArrayLike]) -> float:
    """FRVar [REACT]: :func:`temporal_variance` averaged over the generated reactions."""
    return float(np.mean([temporal_variance(s) for s in samples]))


class SpreadStats:
    """Running sums for FRDvs: mean pairwise MSE of equal-length tracks of different conversations."""

    def __init__(self) -> None:
        self.k = 0
        self.sum: F64 | None = None
        self.sq = 0.0

    def update(self, track: ArrayLike) -> SpreadStats:
        x = _track(track).ravel()
        if self.sum is None:
            self.sum = np.zeros_like(x)
        elif x.shape != self.sum.shape:
            raise ValueError(f"SpreadStats needs equal-size tracks, got {x.size} after {self.sum.size} values")
        self.k += 1
        self.sum += x
        self.sq += float(x @ x)
        return self

    def merge(self, other: SpreadStats) -> SpreadStats:
        if other.sum is None:
            return self
        if self.sum is None:
            self.sum = np.zeros_like(other.sum)
        self.k += other.k
        self.sum += other.sum
        self.sq += other.sq
        return self

    def value(self) -> float:
        if self.k < 2 or self.sum is None:
            return float("nan")
        mean = self.sum / self.k
        spread = self.sq / self.k - float(mean @ mean)
        return float(max(2.0 * self.k / (self.k - 1) * spread, 0.0) / self.sum.size)


def frdvs(per_speaker: Sequence[ArrayLike]) -> float:
    r"""FRDvs [REACT]: diversity across speaker behaviours, the mean pairwise MSE between
    reactions generated for different speakers (tracks cropped to a common length by the
    caller; with several samples per speaker, average this over the sample index).

    A model that ignores its input and always does the same scores 0. Higher is more diverse.
    """
    stats = SpreadStats()
    for t in per_speaker:
        stats.update(t)
    return stats.value()


def lagged_correlation(speaker: ArrayLike, listener: ArrayLike, max_lag: int) -> tuple[NDArray[np.int64], F64]:
    r"""Per-channel Pearson correlation ``r_d(k) = corr(s_{t,d}, x_{t+k,d})`` for lags
    ``k = -max_lag .. max_lag`` (k > 0: the listener follows). Returns (lags, (2L+1, D));
    channels that do not move in the overlap get 0.
    """
    s, x = _pair(speaker, listener)
    n = len(s)
    lags = np.arange(-max_lag, max_lag + 1)
    out = np.zeros((len(lags), s.shape[1]))
    for row, k in enumerate(lags):
        if n - abs(k) < 3:
            continue
        a = s[: n - k] if k >= 0 else s[-k:]
        b = x[k:] if k >= 0 else x[: n + k]
        za, ma = _standardise(a)
        zb, mb = _standardise(b)
        out[row] = np.where(ma & mb, (za * zb).mean(axis=0), 0.0)
    return lags, out


def frsyn(speaker: ArrayLike, generated: ArrayLike, max_lag_s: float = 2.0, fps: float = FPS) -> float:
    r"""FRSyn [REACT]: synchrony as time-lagged cross-correlation (TLCC) offset, in seconds.

    For each channel ``d`` that moves in both tracks, ``k*_d = argmax_k r_d(k)`` over
    ``|k| <= max_lag_s`` (see :func:`lagged_correlation`); ``FRSyn = mean_d |k*_d| / fps``.
    REACT treats lower as better; a human listener follows with a lag of a few hundred ms, so
    compare with the GT's value. NaN when no channel moves in both.
    """
    s, g = _pair(speaker, generated)
    both = (s.std(axis=0) > STATIC_STD) & (g.std(axis=0) > STATIC_STD)
    if not both.any():
        return float("nan")
    lags, r = lagged_correlation(s[:, both], g[:, both], round(max_lag_s * fps))
    return float(np.abs(lags[np.argmax(r, axis=0)]).mean() / fps)
