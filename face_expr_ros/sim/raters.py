r"""Simulated raters: Empathy, Appropriateness, Engagement and Naturalness on a 1-5 scale.

A rating is two steps. :func:`perceive` turns a listener track in its context (the speaker's
timeline, optionally the speaker's track) into cues a person watching would pick up
(:class:`Percept`); then each :class:`Rater` maps cues to scores with its own weights,
bias, scale and noise. The first step is the costly one and is done once per clip; a panel
of raters then scores a batch of percepts as one matrix product.

Cues (``fps`` = 30, ``v_l`` = listener valence from :mod:`face_expr_ros.eval.affect`,
``v_s`` = valence of the story's emotion labels, ``EMOTION_VALENCE[emotion(t)]``, smoothed with
a critically damped filter of tau 0.3 s):

* ``congruence`` rho* = max over lags k in [0, 2] s of Pearson corr(v_s(t - k), v_l(t));
  ``lag_s`` = that k. (0 when the listener's valence does not vary.)
* ``gain`` beta = cov(v_s(t - k*), v_l(t)) / var(v_s): how much affect is shown back.
* ``concern`` = mean browInnerUp over negative frames (v_s < -0.3) minus over the others.
* ``smile_neg`` / ``smile_pos`` = mean smile over negative / positive (v_s > 0.3) frames.
* ``nods``: peaks of the high-passed headPitch (pitch minus its 1.5 s moving average) with
  prominence >= 0.02 rad, >= 0.3 s apart. ``nod_rate`` per minute; ``nod_precision`` = share
  of nods peaking 0.1-1.8 s after the start of a backchannel-relevant pause (pause >= 0.3 s);
  ``nod_recall`` = share of such pauses followed by a nod in that window. The window follows
  Ward & Tsukahara (2000): backchannels come shortly after the speaker's pause cue.
* ``question_brow`` = mean brow raise (browOuterUp + browInnerUp) in the 1.5 s after each
  question end minus its mean elsewhere.
* ``motion`` = mean absolute frame-to-frame velocity of the blendshapes (blinks excluded)
  plus 5 x that of the head (rad), per second.
* ``log_jerk`` = log10 of the mean squared third difference of the same channels, per s^3.
* ``blink_rate`` = upward crossings of eyeBlink = 0.5 per minute.
* ``peak`` = 99th percentile over frames of the largest non-blink blendshape.
* ``stillness`` = share of 1 s windows whose motion is below 0.02 /s.

Sub-scores in [0, 1], with ``band(x; lo, hi) = exp(-(ln(x / clip(x, lo, hi)))^2 / (2 * 0.5^2))``
(1 inside [lo, hi], falling off on a log scale outside: too little and too much both
penalised):

* Empathy      = w . [clip((rho* + 0.1) / 0.8), band(beta; 0.12, 0.8), clip(concern / 0.2),
  clip((smile_pos - smile_neg) / 0.25)]  with w = [0.4, 0.2, 0.2, 0.2]
* Appropriateness = w . [clip(0.5 + rho*), lag_ok, nod_precision, 1 - clip(smile_neg / 0.2),
  band(peak; 0.15, 0.65)] with w = [0.3, 0.15, 0.2, 0.2, 0.15]; lag_ok = exp(-((lag - 0.6) / 0.7)^2)
  when rho* > 0.2 else 0.3 (no visible affective response to time).
* Engagement   = w . [nod_recall, band(nod_rate; 3, 15), band(motion; 0.08, 0.6),
  clip(question_brow / 0.1), clip(2 * |beta|)] with w = [0.3, 0.2, 0.2, 0.15, 0.15]
* Naturalness  = w . [clip((2.2 - log_jerk) / 1.6), band(blink_rate; 8, 30), band(peak; 0.1, 0.7),
  1 - stillness, band(motion; 0.05, 0.8)] with w = [0.35, 0.2, 0.15, 0.15, 0.15]

(Nod precision is 0.5 when there are no nods; all ``clip`` are to [0, 1].) A rater perturbs
each weight vector by a lognormal factor (sigma 0.3) and renormalises, maps a sub-score mix
``m`` to ``r = 3 + s * (1 + 4 m - 3) + b + e`` with scale ``s ~ U(0.8, 1.2)``, bias
``b ~ N(0, 0.3)`` per criterion, noise ``e ~ N(0, sigma)``, ``sigma ~ U(0.35, 0.7)``, clipped to
[1, 5] (and rounded to integers when ``likert=True``). The overall score is
``0.3 E + 0.3 A + 0.2 G + 0.2 N``. Noise is seeded by the rater seed and a hash of the percept,
so a rater gives the same clip the same score, and panels from different seeds are independent.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import uniform_filter1d
from scipy.signal import find_peaks

from face_expr_ros.eval.affect import EMOTION_VALENCE, concern, smile, valence
from face_expr_ros.expression import EYELIDS, FPS, N_BLENDSHAPES, index
from face_expr_ros.sim._dsp import exp_smooth
from face_expr_ros.sim.scripts import EMOTIONS
from face_expr_ros.sim.speech import Timeline

CRITERIA: tuple[str, ...] = ("empathy", "appropriateness", "engagement", "naturalness")
OVERALL_WEIGHTS: NDArray[np.float64] = np.array([0.3, 0.3, 0.2, 0.2])
_BASE_WEIGHTS: dict[str, NDArray[np.float64]] = {
    "empathy": np.array([0.25, 0.15, 0.15, 0.15, 0.15, 0.15]),
    "appropriateness": np.array([0.3, 0.15, 0.2, 0.2, 0.15]),
    "engagement": np.array([0.3, 0.2, 0.2, 0.15, 0.15]),
    "naturalness": np.array([0.35, 0.2, 0.15, 0.15, 0.15]),
}
_BLINKS = list(EYELIDS)
_FACE = np.array([i for i in range(N_BLENDSHAPES) if i not in _BLINKS])
_HEAD = np.arange(N_BLENDSHAPES, N_BLENDSHAPES + 3)
_PITCH = index("headPitch")
_BROWS = [index("browOuterUpLeft"), index("browOuterUpRight"), index("browInnerUp")]


@dataclass(frozen=True)
class Percept:
    """Cues a viewer perceives in one listener clip (definitions in the module docstring)."""

    congruence: float
    lag_s: float
    gain: float
    concern: float
    smile_neg: float
    smile_pos: float
    nod_rate: float
    nod_precision: float
    nod_recall: float
    question_brow: float
    motion: float
    log_jerk: float
    blink_rate: float
    peak: float
    stillness: float

    def as_array(self) -> NDArray[np.float64]:
        return np.array([getattr(self, f.name) for f in fields(self)], dtype=np.float64)


def _clip01(x: NDArray[np.float64] | float) -> NDArray[np.float64]:
    return np.clip(x, 0.0, 1.0)


def band(x: NDArray[np.float64] | float, lo: float, hi: float, width: float = 0.5) -> NDArray[np.float64]:
    """1 inside [lo, hi], log-Gaussian fall-off outside (see the module docstring)."""
    x = np.maximum(np.asarray(x, dtype=np.float64), 1e-6)
    r = np.log(x / np.clip(x, lo, hi))
    return np.exp(-(r**2) / (2 * width**2))


def detect_nods(track: NDArray[np.float32], fps: float = FPS,
                prominence: float = 0.02) -> NDArray[np.float64]:
    """Times (s) of nod peaks in headPitch (module docstring)."""
    pitch = track[:, _PITCH].astype(np.float64)
    hp = pitch - uniform_filter1d(pitch, size=max(int(1.5 * fps), 1), mode="nearest")
    peaks, _ = find_peaks(hp, prominence=prominence, distance=max(int(0.3 * fps), 1))
    return peaks / fps


def _corr(a: NDArray[np.float64], b: NDArray[np.float64]) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-9 else 0.0


def perceive(listener: NDArray[np.float32], timeline: Timeline, fps: float = FPS) -> Percept:
    """Cues of ``listener`` (T x 55) given the speaker's ``timeline``."""
    x = np.asarray(listener, dtype=np.float64)
    n = min(len(x), timeline.n_frames(fps))
    x = x[:n]
    emo_val = np.array([EMOTION_VALENCE[e] for e in EMOTIONS])
    vs = exp_smooth(emo_val[timeline.emotion_index(fps)[:n]], 0.3, fps, order=2)
    vl = valence(x)
    # Best lag in [0, 2] s, every 2 frames.
    best, best_k = -2.0, 0
    for k in range(0, int(2 * fps) + 1, 2):
        c = _corr(vs[: n - k], vl[k:]) if n - k > 10 else 0.0
        if c > best:
            best, best_k = c, k
    a, b = vs[: n - best_k], vl[best_k:]
    var = a.var()
    gain = float(np.mean((a - a.mean()) * (b - b.mean())) / var) if var > 1e-9 else 0.0
    # Negative/positive frames, seen at a typical 0.5 s reaction delay.
    d = int(0.5 * fps)
    vs_d = np.concatenate([np.zeros(d), vs])[:n]
    neg, pos = vs_d < -0.3, vs_d > 0.3
    other = ~neg
    conc, sm = concern(x), smile(x)
    concern_diff = float(conc[neg].mean() - conc[other].mean()) if neg.any() and other.any() else 0.0
    smile_neg = float(sm[neg].mean()) if neg.any() else 0.0
    smile_pos = float(sm[pos].mean()) if pos.any() else float(sm.mean())

    nods = detect_nods(x.astype(np.float32), fps)
    minutes = n / fps / 60.0
    places = np.array([p.start for p in timeline.backchannel_places(0.3)])
    if len(nods) and len(places):
        dt = nods[:, None] - places[None, :]
        hit = (dt >= 0.1) & (dt <= 1.8)
        precision = float(hit.any(axis=1).mean())
        recall = float(hit.any(axis=0).mean())
    else:
        precision, recall = 0.5 if len(nods) == 0 else 0.0, 0.0

    brows = x[:, _BROWS].sum(axis=1)
    qmask = np.zeros(n, dtype=bool)
    for p in timeline.pauses:
        if p.kind == "question":
            qmask[int(p.start * fps):int((p.start + 1.5) * fps)] = True
    qbrow = float(brows[qmask].mean() - brows[~qmask].mean()) if qmask.any() and (~qmask).any() else 0.0

    vel_face = np.abs(np.diff(x[:, _FACE], axis=0)).sum(axis=1) * fps
    vel_head = np.abs(np.diff(x[:, _HEAD], axis=0)).sum(axis=1) * fps * 5.0
    vel = vel_face + vel_head
    motion = float(vel.mean()) if len(vel) else 0.0
    chans = np.concatenate([x[:, _FACE], 5.0 * x[:, _HEAD]], axis=1)
    j3 = np.diff(chans, n=3, axis=0) * fps**3
    log_jerk = float(np.log10(np.mean(np.sum(j3**2, axis=1)) + 1e-9) / 2.0) if len(j3) else 0.0
    blink = x[:, _BLINKS].mean(axis=1)
    blink_rate = float(np.sum((blink[1:] >= 0.5) & (blink[:-1] < 0.5)) / max(minutes, 1e-9))
    peak = float(np.percentile(x[:, _FACE].max(axis=1), 99)) if n else 0.0
    w = int(fps)
    nw = len(vel) // w
    stillness = float(np.mean(vel[: nw * w].reshape(nw, w).mean(axis=1) < 0.02)) if nw else 1.0
    # A viewer cannot see a correlation in changes too small to notice: weight it by visibility.
    visibility = float(np.clip(vl.std() / 0.03, 0.0, 1.0))
    return Percept(max(best, 0.0) * visibility, best_k / fps, gain, concern_diff, smile_neg, smile_pos,
                   len(nods) / max(minutes, 1e-9), precision, recall, qbrow, motion, log_jerk, blink_rate,
                   peak, stillness)


def subscores(percepts: list[Percept] | NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
    """Per-criterion (C, k) sub-score matrices in [0, 1] (formulas in the module docstring)."""
    p = np.atleast_2d(np.array([q.as_array() for q in percepts]) if isinstance(percepts, list) else percepts)
    names = [f.name for f in fields(Percept)]
    g = {k: p[:, i] for i, k in enumerate(names)}
    lag_ok = np.where(g["congruence"] > 0.2, np.exp(-(((g["lag_s"] - 0.9) / 0.8) ** 2)), 0.3)
    exaggeration_ok = band(g["peak"], 0.2, 0.7, width=0.3)
    return {
        "empathy": np.stack([
            _clip01((g["congruence"] + 0.1) / 0.8), band(g["gain"], 0.12, 0.6), _clip01(g["concern"] / 0.2),
            _clip01((g["smile_pos"] - g["smile_neg"]) / 0.25), lag_ok, exaggeration_ok], axis=1),
        "appropriateness": np.stack([
            _clip01(0.5 + g["congruence"]), lag_ok, g["nod_precision"], 1.0 - _clip01(g["smile_neg"] / 0.2),
            exaggeration_ok], axis=1),
        "engagement": np.stack([
            np.sqrt(g["nod_recall"] * g["nod_precision"]), band(g["nod_rate"], 4.0, 20.0),
            band(g["motion"], 0.08, 0.6),
            _clip01(g["question_brow"] / 0.1), _clip01(2.0 * np.abs(g["gain"]))], axis=1),
        "naturalness": np.stack([
            _clip01((3.2 - g["log_jerk"]) / 1.2), band(g["blink_rate"], 8.0, 30.0),
            band(g["peak"], 0.25, 0.7),
            1.0 - g["stillness"], band(g["motion"], 0.05, 0.8)], axis=1),
    }


@dataclass(frozen=True)
class Rater:
    """One simulated rater (module docstring): weights, scale, bias and noise level."""

    seed: int
    weights: dict[str, NDArray[np.float64]]
    scale: float
    bias: NDArray[np.float64]
    noise: float

    @classmethod
    def from_seed(cls, seed: int) -> Rater:
        rng = np.random.default_rng([seed, 0x7A7E])
        weights = {}
        for c in CRITERIA:
            w = _BASE_WEIGHTS[c] * np.exp(rng.normal(0.0, 0.3, size=len(_BASE_WEIGHTS[c])))
            weights[c] = w / w.sum()
        return cls(seed, weights, float(rng.uniform(0.8, 1.2)), rng.normal(0.0, 0.3, size=len(CRITERIA)),
                   float(rng.uniform(0.35, 0.7)))

    def score_subscores(self, subs: dict[str, NDArray[np.float64]], keys: NDArray[np.uint32],
                        likert: bool = False) -> NDArray[np.float64]:
        """(C, 4) ratings from sub-score matrices; ``keys`` (C,) seed the per-clip noise."""
        mix = np.stack([subs[c] @ self.weights[c] for c in CRITERIA], axis=1)
        noise = np.stack([np.random.default_rng([self.seed, int(k)]).standard_normal(len(CRITERIA))
                          for k in keys]) if len(keys) else np.zeros((0, len(CRITERIA)))
        r = 3.0 + self.scale * (1.0 + 4.0 * mix - 3.0) + self.bias + self.noise * noise
        r = np.clip(r, 1.0, 5.0)
        return np.round(r) if likert else r


def percept_key(p: Percept) -> int:
    """A 32-bit key of a percept (noise seed), stable across processes."""
    return zlib.crc32(np.round(p.as_array(), 6).tobytes())


@dataclass(frozen=True)
class Ratings:
    """Scores of C clips by R raters: ``scores[c, r, k]`` for criterion ``CRITERIA[k]``."""

    scores: NDArray[np.float64]

    @property
    def mean(self) -> NDArray[np.float64]:
        """(C, 4) panel means."""
        return self.scores.mean(axis=1)

    @property
    def overall(self) -> NDArray[np.float64]:
        """(C,) weighted overall score of the panel means (weights ``OVERALL_WEIGHTS``)."""
        return self.mean @ OVERALL_WEIGHTS


@dataclass(frozen=True)
class RaterPanel:
    """A panel of raters drawn from one seed."""

    seed: int
    raters: tuple[Rater, ...]

    @classmethod
    def from_seed(cls, seed: int, n_raters: int = 5) -> RaterPanel:
        ss = np.random.SeedSequence([seed, 0x9A7E1])
        seeds = [int(s.generate_state(1)[0]) for s in ss.spawn(n_raters)]
        return cls(seed, tuple(Rater.from_seed(s) for s in seeds))

    def rate_percepts(self, percepts: list[Percept], likert: bool = False) -> Ratings:
        subs = subscores(percepts)
        keys = np.array([percept_key(p) for p in percepts], dtype=np.uint32)
        return Ratings(np.stack([r.score_subscores(subs, keys, likert) for r in self.raters], axis=1))

    def rate(self, listener: NDArray[np.float32], timeline: Timeline, likert: bool = False) -> Ratings:
        """Ratings of one clip: ``.scores`` has shape (1, n_raters, 4)."""
        return self.rate_percepts([perceive(listener, timeline)], likert)
