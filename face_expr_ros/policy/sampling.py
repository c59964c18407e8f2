"""Sampling outside the graph: temperature and nucleus (top-p) sampling in numpy, seeded.

Every back-end (PyTorch, ONNX Runtime, TensorRT) only returns logits; the random choices are
made here with one ``numpy.random.Generator``, so the same logits and seed give the same tokens
on every back-end. A chunk is sampled in the order the model factorises (see ``network.py``):
the code ``z`` first, then, given ``z``, all base bins and keyframe steps.

For a categorical with logits ``l``: temperature ``T`` gives ``p = softmax(l / T)``; top-p
(Holtzman et al., 2020, "The Curious Case of Neural Text Degeneration") keeps the smallest set
of most-likely classes whose mass reaches ``p`` and renormalises. ``T = 0`` is greedy (argmax,
ties to the lowest index), deterministic whatever the seed.

Two log-probabilities are returned per chunk, both exact sums over every sampled discrete choice:

* ``logp_sample``: under the distribution actually sampled from (after temperature and top-p);
  0 for greedy decoding;
* ``logp_model``: under the model itself (T = 1, no truncation), joint with ``z``, i.e.
  ``log p(z | x) + sum log p(token | x, z)``; what importance weights in RL start from. The
  marginal over ``z`` (for DPO on stored tokens) is ``ListenerPolicy.log_prob``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
# Defaults of the streaming policy and the evaluation: the code at full temperature (behaviour at
# its natural rate), the tokens given the code cooler (see ``sample_chunk``), except the eyelids' and
# the gaze's (``runtime.Policy``: blinks and glances away are rare events in any one plan, and a cool
# draw all but never picks them) and the head's (greedy given the code: the code says whether to nod,
# and head tokens drawn at random add pitch bumps a viewer reads as nods at the wrong moments).
# The eyelid temperature is the one at which the policy blinks as often as the recorded listeners
# (docs/policy.md, "Blinks and glances"; "Head given the code").
DEFAULT_TEMPERATURE, DEFAULT_TOP_P, DEFAULT_TOKEN_TEMPERATURE = 1.0, 1.0, 0.7
DEFAULT_EYELID_TEMPERATURE = 1.15
DEFAULT_GAZE_TEMPERATURE = 1.0
DEFAULT_HEAD_TEMPERATURE = 0.0
DEFAULT_CODE_PERSISTENCE = 3.0
DEFAULT_LEVEL_NOISE_TAU_S = 1.0


def log_softmax(logits: NDArray, axis: int = -1) -> NDArray[np.float64]:
    x = np.asarray(logits, np.float64)
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def _nucleus(weights: NDArray[np.float32], total: NDArray[np.float32], top_p: float) -> NDArray[np.float32]:
    """Zero the weights of classes outside the nucleus (rows of class-ordered candidate weights).

    The nucleus (Holtzman et al., 2020) is the smallest most-likely set whose mass reaches
    ``top_p``; found through its smallest kept probability, so classes tied with it are all kept
    and the set does not depend on sort order. ``total`` is each row's mass over *all* classes.
    """
    if top_p >= 1.0:
        return weights
    probs = weights / total[:, None]
    desc = -np.sort(-probs, axis=1)
    before = np.cumsum(desc, axis=1) - desc
    # Keep a class while the mass *before* it is below top_p: the top class is always kept.
    n_keep = np.maximum((before < top_p).sum(axis=1), 1)
    threshold = desc[np.arange(len(desc)), n_keep - 1]
    return np.where(probs >= threshold[:, None], weights, np.float32(0.0))


def _draw(weights: NDArray[np.float32], u: NDArray[np.float64]) -> tuple[I64, NDArray[np.float64]]:
    """Inverse-CDF draw per row from unnormalised weights; returns (column, log-prob)."""
    rows = np.arange(len(weights))
    cdf = np.cumsum(weights, axis=1)
    total = cdf[:, -1]
    choice = np.minimum((cdf <= (u * total).astype(np.float32)[:, None]).sum(axis=1), weights.shape[1] - 1)
    w = weights[rows, choice]
    # A class of weight 0 can only be hit through rounding at the very end of the CDF.
    while (w <= 0).any():
        choice = np.where(w <= 0, choice - 1, choice)
        w = weights[rows, choice]
    return choice, np.log(w.astype(np.float64)) - np.log(total.astype(np.float64))


def sampling_log_probs(logits: NDArray, temperature: float, top_p: float) -> NDArray[np.float64]:
    """Log-probabilities of the distribution sampled from (``-inf`` for classes cut by top-p)."""
    if temperature <= 0:
        raise ValueError("sampling_log_probs needs temperature > 0; temperature 0 is argmax")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    x = np.asarray(logits, np.float64)
    v = x.shape[-1]
    w = np.exp(log_softmax(x / temperature)).reshape(-1, v)
    kept = _nucleus(w, w.sum(axis=1), top_p).reshape(x.shape)
    with np.errstate(divide="ignore"):
        return np.log(kept / kept.sum(axis=-1, keepdims=True))


def sample_categorical(logits: NDArray, rng: np.random.Generator, temperature: float = 1.0,
                       top_p: float = 1.0, prefilter: int = 32,
                       uniforms: ArrayLike | None = None) -> tuple[I64, NDArray[np.float64], NDArray[np.float64]]:
    """Sample every row of ``logits`` (..., V).

    Each row is an inverse-CDF draw at one uniform number: fresh from ``rng``, or given per row
    in ``uniforms`` (shape ``(...)``, values in [0, 1)), e.g. by :class:`LevelNoise`.

    Returns (choices (...), log-prob under the sampling distribution, log-prob under the model).
    The bulk arithmetic is float32 (this runs at 30 Hz on a small CPU, where every numpy call
    counts); per-row results are float64. Log-probabilities are exact up to float32 rounding.

    With top-p, rows whose ``prefilter`` most likely classes already hold ``top_p`` of the mass
    (nearly all rows of a trained model) are sampled among those classes only, kept in class
    order: the nucleus, the CDF and hence the choice for a given uniform are identical to
    sampling over all ``V`` classes, without sorting all of them.
    """
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    x = np.asarray(logits, np.float32)
    lead, v = x.shape[:-1], x.shape[-1]
    x = x.reshape(-1, v)
    x = x - x.max(axis=1, keepdims=True)
    rows = np.arange(len(x))
    exp_x = np.exp(x)
    if temperature <= 0:
        choice = np.argmax(x, axis=1)
        sample_lp = np.zeros(len(x))
    else:
        if uniforms is None:
            u = rng.random(len(x))  # one uniform per row, in C order: the stream is fixed
        else:
            u = np.asarray(uniforms, np.float64).reshape(-1)
            if u.shape != (len(x),) or not ((u >= 0) & (u < 1)).all():
                raise ValueError(f"uniforms must hold one value in [0, 1) per row ({lead}), got shape "
                                 f"{np.shape(uniforms)}")
        weights = exp_x if temperature == 1.0 else np.exp(x * np.float32(1.0 / temperature))
        total = weights.sum(axis=1)
        if top_p >= 1.0 or v <= 2 * prefilter:
            choice, sample_lp = _draw(_nucleus(weights, total, top_p), u)
        else:
            idx = np.argpartition(x, v - prefilter, axis=1)[:, v - prefilter:]
            idx.sort(axis=1)
            top = weights[rows[:, None], idx]
            fast = top.sum(axis=1) >= top_p * total
            col, sample_lp = _draw(_nucleus(top, total, top_p), u)
            choice = idx[rows, col]
            if not fast.all():  # a flat row: its nucleus is wider than the prefilter
                slow = ~fast
                choice[slow], sample_lp[slow] = _draw(_nucleus(weights[slow], total[slow], top_p), u[slow])
    log_z = np.log(exp_x.sum(axis=1, dtype=np.float64))  # model log-normaliser (T = 1)
    model_lp = x[rows, choice].astype(np.float64) - log_z
    return choice.reshape(lead).astype(np.int64), sample_lp.reshape(lead), model_lp.reshape(lead)


@dataclass
class ChunkSample:
    """One sampled chunk per batch row: its tokens and their exact log-probabilities."""

    code: I64  # (B,)
    base: I64  # (B, 55)
    deltas: I64  # (B, M-1, 55)
    logp_sample: NDArray[np.float64]  # (B,)
    logp_model: NDArray[np.float64]  # (B,) joint with the code, temperature 1, no top-p


HeadFn = Callable[[F32, I64], tuple[F32, F32]]


def sample_chunk(h: F32, code_logits: F32, head: HeadFn, rng: np.random.Generator, *, temperature: float = 1.0,
                 top_p: float = 1.0, token_temperature: float | ArrayLike | None = None,
                 code_bias: ArrayLike | None = None, tied: Sequence[int] = (),
                 base_uniforms: ArrayLike | None = None) -> ChunkSample:
    """Code first, then every token given the code (``head(h, code)`` returns their logits).

    ``temperature`` and ``top_p`` apply to the code; the tokens are drawn at ``token_temperature``
    (default: ``temperature``) with the same ``top_p``. The code decides *what* the face does
    (a blink, a nod, holding still) and should be sampled at full temperature for behaviour to
    happen at its natural rate; given the code, tokens drawn cooler keep the 55 channels from
    moving with independent noise. ``token_temperature`` may also be one value per channel (55,).
    ``code_bias`` (B, K) is added to the code logits before drawing (a decoding prior, e.g. the
    runtime's code persistence); ``logp_model`` stays the model's own, without it.

    ``tied`` channels (at one temperature) move as one: each of their tokens is drawn once from
    the normalised geometric mean of the channels' distributions (their mean logits: for channels
    that agree, their common distribution — a product would square it and make rare events
    rarer) and copied to all of them. Drawn apart, the two eyelids close at different moments: a
    wink, never a blink. ``logp_sample`` counts a tied draw once; ``logp_model`` is still the model's log-probability
    of every channel's token. ``temperature`` 0 is greedy for all of it.

    ``base_uniforms`` (B, 55) are the uniform numbers at which the base tokens (each channel's
    level at the chunk's start) are drawn by inverse CDF, instead of fresh ones: with slowly
    varying uniforms (:class:`LevelNoise`) consecutive plans draw nearby quantiles of their
    distributions. Every draw still follows the distribution it is drawn from, so
    ``logp_sample`` and ``logp_model`` are unchanged; consecutive chunks are no longer independent.
    """
    if code_bias is None:
        code, lp_s, lp_m = sample_categorical(code_logits, rng, temperature, top_p)
    else:
        code, lp_s, _ = sample_categorical(np.asarray(code_logits) + np.asarray(code_bias, np.float32), rng,
                                           temperature, top_p)
        lp_m = np.take_along_axis(log_softmax(code_logits), code[:, None], axis=1)[:, 0]
    base_logits, delta_logits = head(h, code)
    if token_temperature is None or temperature <= 0:
        token_temperature = temperature
    temps = np.asarray(token_temperature, np.float64)
    if (temps < 0).any() or not np.isfinite(temps).all():
        raise ValueError(f"token_temperature must be finite and >= 0, got {token_temperature}")
    if temps.ndim == 0 and not tied:
        base, bs, bm = sample_categorical(base_logits, rng, float(temps), top_p, uniforms=base_uniforms)
        deltas, ds, dm = sample_categorical(delta_logits, rng, float(temps), top_p)
    else:
        base, deltas, bs, bm, ds, dm = _sample_tokens_per_channel(base_logits, delta_logits, rng, temps, top_p,
                                                                  list(tied), base_uniforms)
    return ChunkSample(code, base, deltas,
                       lp_s + bs.sum(-1) + ds.sum((-1, -2)),
                       lp_m + bm.sum(-1) + dm.sum((-1, -2)))


def _model_log_prob(logits: NDArray, choice: I64) -> NDArray[np.float64]:
    """Log-probability under the model (T = 1, no truncation) of ``choice`` (...) in ``logits`` (..., V)."""
    x = np.asarray(logits, np.float32)
    top = x.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(x - top).sum(axis=-1, dtype=np.float64)) + top[..., 0]
    return np.take_along_axis(x, choice[..., None], -1)[..., 0].astype(np.float64) - log_z


def _sample_tokens_per_channel(base_logits: F32, delta_logits: F32, rng: np.random.Generator,
                               temps: NDArray[np.float64], top_p: float, tied: list[int],
                               base_uniforms: ArrayLike | None = None) -> tuple[NDArray, ...]:
    """``sample_chunk``'s tokens with per-channel temperatures and tied channels: (base, deltas,
    their sampling and model log-probabilities (base, base, deltas, deltas)).

    Every row is divided by its channel's temperature (a greedy channel becomes one-hot at its
    argmax) and all rows are drawn at once at temperature 1: one draw for the 55 base tokens, one
    for the steps, as cheap as the single-temperature case (this runs on the 30 Hz path).
    """
    n = base_logits.shape[-2]
    temps = np.broadcast_to(temps, (n,)) if temps.ndim == 0 else temps
    if temps.shape != (n,):
        raise ValueError(f"token_temperature per channel needs {n} values, got shape {temps.shape}")
    if tied and len(set(temps[tied].tolist())) != 1:
        raise ValueError(f"tied channels {tied} must share one token temperature, got {temps[tied].tolist()}")
    drawn = []
    for logits, uniforms in ((np.asarray(base_logits, np.float32), base_uniforms),
                             (np.asarray(delta_logits, np.float32), None)):
        x = logits.copy()
        if tied:
            x[..., tied, :] = x[..., tied, :].mean(axis=-2, keepdims=True)
        greedy = temps <= 0
        x /= np.where(greedy, 1.0, temps).astype(np.float32)[:, None]
        if greedy.any():
            hot = np.full(x[..., greedy, :].shape, np.float32(-1e30))
            np.put_along_axis(hot, x[..., greedy, :].argmax(axis=-1)[..., None], np.float32(0), axis=-1)
            x[..., greedy, :] = hot  # argmax, ties to the lowest index
        if greedy.all():  # temperature 0 consumes no randomness
            choice, lp_sample = x.argmax(axis=-1), np.zeros(x.shape[:-1])
        else:
            choice, lp_sample, _ = sample_categorical(x, rng, 1.0, top_p, uniforms=uniforms)
        if tied:
            choice[..., tied] = choice[..., tied[:1]]
            lp_sample[..., tied[1:]] = 0.0  # one draw for the group
        drawn += [choice, lp_sample, _model_log_prob(logits, choice)]
    base, bs, bm, deltas, ds, dm = drawn
    return base, deltas, bs, bm, ds, dm


class LevelNoise:
    """Slowly varying uniform numbers, one per channel, for drawing each plan's base tokens.

    Drawn afresh at every plan, the level of every channel jumps to a new, independent quantile
    of its distribution several times a second: averaged by the blending and the output filter
    this is both restless and *flatter* than the data (the spread of gaze, head sway and brows
    is averaged away). Here the quantile itself moves slowly: a Gaussian AR(1) process per
    channel, ``z_k = rho z_{k-1} + sqrt(1 - rho^2) e_k``, ``e_k ~ N(0, 1)``, mapped to a uniform
    by the normal CDF, ``u = Phi(z)``. Each ``u`` is uniform on its own, so every draw follows
    the model's distribution at that plan, while the face wanders through it at the pace of
    ``rho`` (a Gaussian copula; the same idea as the temporally correlated exploration noise of
    Eberhard et al., ICLR 2023, "Pink Noise Is All You Need"). When the model's distribution
    moves (a smile is due), the drawn level moves with it at once.

    ``rho`` (55,) is the correlation from one plan to the next per channel (0: independent, as
    without this class); ``partner`` (55,) maps a channel to the one whose number it shares
    (``expression.yoked_partner``: the two sides of a smile rise together, the eyes turn together).
    """

    def __init__(self, rho: ArrayLike, partner: ArrayLike) -> None:
        self.rho = np.asarray(rho, np.float64)
        self.partner = np.asarray(partner, np.int64)
        if self.rho.ndim != 1 or self.partner.shape != self.rho.shape:
            raise ValueError(f"rho and partner need one value per channel, got {self.rho.shape}, {self.partner.shape}")
        if not ((self.rho >= 0) & (self.rho < 1)).all():
            raise ValueError(f"rho must be in [0, 1), got {self.rho}")
        self.source = np.minimum(np.arange(len(self.rho)), self.partner)  # one number per yoked group
        self._z: NDArray[np.float64] | None = None

    @classmethod
    def for_plans(cls, tau_s: float, plan_interval_s: float, partner: ArrayLike,
                  fresh: Sequence[int] = ()) -> LevelNoise:
        """Correlation time ``tau_s`` between plans ``plan_interval_s`` apart; ``fresh`` channels uncorrelated."""
        if tau_s < 0 or plan_interval_s <= 0:
            raise ValueError(f"need tau_s >= 0 and plan_interval_s > 0, got {tau_s}, {plan_interval_s}")
        n = len(np.asarray(partner))
        rho = np.full(n, np.exp(-plan_interval_s / tau_s) if tau_s > 0 else 0.0)
        rho[list(fresh)] = 0.0
        return cls(rho, partner)

    def reset(self) -> None:
        self._z = None

    def next(self, rng: np.random.Generator) -> NDArray[np.float64]:
        """The uniforms (55,) for the next plan."""
        e = rng.standard_normal(len(self.rho))
        if self._z is None:
            self._z = e
        else:
            self._z = self.rho * self._z + np.sqrt(1.0 - self.rho ** 2) * e
        z = self._z[self.source]
        u = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in z])
        return np.minimum(u, np.nextafter(1.0, 0.0))
