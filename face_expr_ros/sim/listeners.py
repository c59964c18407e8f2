"""Listener behaviour: several styles with per-person variation, given the speaker's context.

A listener track is built from the speaker context (timeline with words, pauses, questions
and emotions, and the speaker's own face), in four layers that are summed and clamped:

1. *Affect response*: the per-frame emotion of the speaker's story is mapped to a listener
   reaction pose (congruent map: joy -> smile back; sadness -> concern, i.e. browInnerUp and a
   slight frown; anger -> indignant brow lowering; surprise -> raised brows; fear -> concern
   with widened eyes), scaled by ``mirror_gain`` and by how strongly the speaker displays it
   (``0.6 + 0.4 * min(1, 2 |valence(speaker)|)``), delayed by ``delay_s`` (emotional mimicry
   follows the expresser by ~0.3-1 s; Dimberg & Thunberg 1998, Hess & Fischer 2013) and
   smoothed with a critically damped filter of time constant ``affect_tau_s``.
2. *Backchannel nods* at backchannel-relevant places (clause ends, hesitations, turn ends):
   with probability ``nod_prob`` (x1.3 at turn ends and questions) a nod starts
   ``nod_delay_s`` after the pause begins. Ward & Tsukahara (2000) find backchannels placed
   after a pause/low-pitch region of the speaker, within a few hundred ms; nods are the
   visual backchannel (Poggi et al. 2010). A nod is 1-3 cycles of a raised cosine on
   headPitch (> 0 = chin down), period 0.4-0.65 s, each cycle 0.6x the previous one.
   At question ends the listener raises the brows (browOuterUp, browInnerUp).
3. *Idle behaviour*: Poisson blinks (``blink_rate`` per min, 100-150 ms, Bentivoglio et
   al. 1997) plus a blink at turn ends with probability 0.3, a slow head sway and gaze jitter.
4. *Style-specific distortions*: ``timing_jitter_s`` shifts every reaction (affect episode,
   nod) by a uniform random offset in [-j/2, j] (mistimed); ``random_nod_rate`` adds nods at
   Poisson times unrelated to the speech; ``burst_rate`` adds random expression bursts;
   ``affect_map = 'inverted'`` replaces the congruent map with an incongruent one (smiles at
   sad/angry/fearful news, flat or frowning at joy); ``step_noise`` adds piecewise-constant
   jumps; ``smooth_tau_s`` sets the final smoothing (small = jerky).

Styles (:data:`STYLES`): ``attentive`` (empathic, well timed), ``reserved`` (same timing,
low amplitude, fewer nods), ``mistimed`` (over-expressive, reactions at random or shifted
times, jerky), ``inappropriate`` (well timed, wrong affect), ``frozen`` (nearly still,
robotic). :func:`sample_listener` draws a style from a mix and per-person parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray

from face_expr_ros.eval.affect import valence
from face_expr_ros.expression import DIM, FPS, clamp, from_dict, index
from face_expr_ros.sim._dsp import add_kernel, blink_train, exp_smooth, hann_pulse, smooth_noise
from face_expr_ros.sim.scripts import EMOTIONS
from face_expr_ros.sim.speech import Timeline

STYLES: tuple[str, ...] = ("attentive", "reserved", "mistimed", "inappropriate", "frozen")
# How often each style occurs in the generated "recordings": mostly competent listeners, as in a
# recorded corpus, with flawed ones in half of the conversations, so that imitation of the whole
# mix does not yield the preferred (attentive) style. (Until v0.2 attentive was 30 %: the mix then
# rated below a delayed mirror of the speaker, and no imitation of it could beat that baseline.)
DEFAULT_STYLE_MIX: dict[str, float] = {
    "attentive": 0.50, "reserved": 0.25, "mistimed": 0.10, "inappropriate": 0.10, "frozen": 0.05,
}

CONGRUENT_POSES: dict[str, NDArray[np.float32]] = {
    "neutral": from_dict({}),
    "joy": from_dict({"mouthSmileLeft": 0.55, "mouthSmileRight": 0.55, "cheekSquintLeft": 0.3,
                      "cheekSquintRight": 0.3, "eyeSquintLeft": 0.15, "eyeSquintRight": 0.15}),
    "sadness": from_dict({"browInnerUp": 0.55, "mouthFrownLeft": 0.3, "mouthFrownRight": 0.3,
                          "mouthPressLeft": 0.1, "mouthPressRight": 0.1, "headRoll": 0.06}),
    "anger": from_dict({"browDownLeft": 0.35, "browDownRight": 0.35, "mouthPressLeft": 0.25,
                        "mouthPressRight": 0.25, "mouthFrownLeft": 0.15, "mouthFrownRight": 0.15}),
    "surprise": from_dict({"browOuterUpLeft": 0.45, "browOuterUpRight": 0.45, "browInnerUp": 0.3,
                           "eyeWideLeft": 0.35, "eyeWideRight": 0.35, "jawOpen": 0.1}),
    "fear": from_dict({"browInnerUp": 0.5, "eyeWideLeft": 0.25, "eyeWideRight": 0.25,
                       "mouthFrownLeft": 0.15, "mouthFrownRight": 0.15, "mouthStretchLeft": 0.1,
                       "mouthStretchRight": 0.1}),
}
# Incongruent map: amused at bad news, flat or disapproving at good news.
INVERTED_POSES: dict[str, NDArray[np.float32]] = {
    "neutral": from_dict({"mouthSmileLeft": 0.1, "mouthSmileRight": 0.1}),
    "joy": from_dict({"browDownLeft": 0.25, "browDownRight": 0.25, "mouthFrownLeft": 0.2,
                      "mouthFrownRight": 0.2, "mouthPressLeft": 0.15, "mouthPressRight": 0.15}),
    "sadness": from_dict({"mouthSmileLeft": 0.6, "mouthSmileRight": 0.6, "cheekSquintLeft": 0.35,
                          "cheekSquintRight": 0.35}),
    "anger": from_dict({"mouthSmileLeft": 0.55, "mouthSmileRight": 0.55, "cheekSquintLeft": 0.3,
                        "cheekSquintRight": 0.3, "jawOpen": 0.1}),
    "surprise": from_dict({"browDownLeft": 0.15, "browDownRight": 0.15, "eyeSquintLeft": 0.2,
                           "eyeSquintRight": 0.2}),
    "fear": from_dict({"mouthSmileLeft": 0.5, "mouthSmileRight": 0.5, "cheekSquintLeft": 0.25,
                       "cheekSquintRight": 0.25}),
}
_MAPS = {
    "congruent": np.stack([CONGRUENT_POSES[e] for e in EMOTIONS]).astype(np.float64),
    "inverted": np.stack([INVERTED_POSES[e] for e in EMOTIONS]).astype(np.float64),
}

_PITCH, _YAW, _ROLL = index("headPitch"), index("headYaw"), index("headRoll")
_BLINK = [index("eyeBlinkLeft"), index("eyeBlinkRight")]
_BROW_Q = [index("browOuterUpLeft"), index("browOuterUpRight"), index("browInnerUp")]


@dataclass(frozen=True)
class ListenerParams:
    """One listener: a style and that person's parameters (see the module docstring)."""

    style: str
    person_seed: int
    affect_map: str
    mirror_gain: float
    delay_s: float
    affect_tau_s: float
    nod_prob: float
    nod_amp: float
    nod_delay_s: float
    question_brow: float
    timing_jitter_s: float
    random_nod_rate: float
    burst_rate: float
    blink_rate: float
    head_sway: float
    step_noise: float
    smooth_tau_s: float
    baseline_smile: float

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def sample_params(style: str, rng: np.random.Generator) -> ListenerParams:
    """Per-person parameters of ``style`` drawn from ``rng``."""
    u = rng.uniform
    seed = int(rng.integers(2**31))
    if style == "attentive":
        return ListenerParams(style, seed, "congruent", u(0.55, 0.95), u(0.3, 1.0), u(0.3, 0.5),
                              u(0.55, 0.85),
                              u(0.06, 0.11), u(0.15, 0.5), u(0.2, 0.4), 0.0, u(0.0, 0.5), 0.0, u(14, 22),
                              u(0.012, 0.025), 0.0, u(0.1, 0.18), u(0.0, 0.08))
    if style == "reserved":
        return ListenerParams(style, seed, "congruent", u(0.15, 0.32), u(0.3, 1.0), u(0.3, 0.5),
                              u(0.25, 0.45),
                              u(0.035, 0.055), u(0.2, 0.6), u(0.05, 0.12), 0.0, u(0.0, 0.3), 0.0, u(12, 20),
                              u(0.006, 0.014), 0.0, u(0.14, 0.24), u(0.0, 0.04))
    if style == "mistimed":
        # Reactions either anticipate the news (up to 1.5 s early) or come 2-4 s late.
        delay = u(-1.5, -0.5) if rng.random() < 0.4 else u(2.0, 4.0)
        return ListenerParams(style, seed, "congruent", u(0.9, 1.4), delay, u(0.05, 0.15), u(0.1, 0.3),
                              u(0.12, 0.22), u(0.0, 1.5), u(0.4, 0.8), u(3.0, 6.0), u(8.0, 14.0),
                              u(10.0, 18.0),
                              u(22, 40), u(0.03, 0.06), u(0.06, 0.15), u(0.015, 0.04), u(0.0, 0.1))
    if style == "inappropriate":
        return ListenerParams(style, seed, "inverted", u(0.55, 0.95), u(0.3, 1.0), u(0.3, 0.5), u(0.45, 0.75),
                              u(0.05, 0.1), u(0.15, 0.5), u(0.0, 0.15), 0.0, u(0.0, 0.5), 0.0, u(14, 22),
                              u(0.012, 0.025), 0.0, u(0.1, 0.18), u(0.05, 0.15))
    if style == "frozen":
        return ListenerParams(style, seed, "congruent", 0.0, 1.0, 0.5, 0.0,
                              0.0, 0.3, 0.0, 0.0, 0.0, 0.0, u(0.0, 3.0),
                              u(0.0, 0.002), 0.0, 0.3, u(0.0, 0.05))
    raise ValueError(f"unknown listener style {style!r}; expected one of {STYLES}")


def sample_listener(rng: np.random.Generator, style: str | None = None,
                    mix: dict[str, float] | None = None) -> ListenerParams:
    """A listener as in a recording: style drawn from ``mix`` (unless given), then parameters."""
    if style is None:
        mix = mix or DEFAULT_STYLE_MIX
        names = list(mix)
        p = np.array([mix[k] for k in names], dtype=np.float64)
        style = names[int(rng.choice(len(names), p=p / p.sum()))]
    return sample_params(style, rng)


def _nod_kernel(rng: np.random.Generator, amp: float, fps: float) -> NDArray[np.float64]:
    period = float(rng.uniform(0.4, 0.65))
    cycles = int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))
    one = hann_pulse(round(period * fps))
    return amp * np.concatenate([one * 0.6**c for c in range(cycles)])


def _shifted_emotions(timeline: Timeline, n: int, fps: float,
                      shifts: NDArray[np.float64]) -> NDArray[np.int64]:
    """Per-frame emotion index with each utterance's onset moved by ``shifts[i]`` seconds."""
    t = np.arange(n) / fps
    starts = np.array([u.start for u in timeline.utterances]) + shifts
    order = np.argsort(starts, kind="stable")
    ui = np.searchsorted(starts[order], t, side="right") - 1
    emo = np.array([EMOTIONS.index(u.emotion) for u in timeline.utterances], dtype=np.int64)[order]
    return np.where(ui >= 0, emo[np.maximum(ui, 0)], 0)


def listener_track(params: ListenerParams, timeline: Timeline, speaker: NDArray[np.float32], seed: int,
                   fps: float = FPS) -> NDArray[np.float32]:
    """The listener's T x 55 track in the given speaker context; deterministic in ``seed``.

    ``speaker`` is the speaker's T x 55 track (its valence scales the mirrored intensity).
    """
    rng = np.random.default_rng([seed, params.person_seed, 0x115E])
    n = timeline.n_frames(fps)
    track = np.zeros((n, DIM))
    j = params.timing_jitter_s

    # 1. Affect response.
    n_utt = len(timeline.utterances)
    shifts = rng.uniform(-0.5 * j, j, size=n_utt) if j > 0 else np.zeros(n_utt)
    emo = _shifted_emotions(timeline, n, fps, shifts + params.delay_s)
    sv = np.abs(valence(speaker[:n])) if len(speaker) else np.zeros(n)
    strength = 0.6 + 0.4 * np.minimum(1.0, 2.0 * sv)
    d = round(params.delay_s * fps)
    strength = np.roll(strength, d) if n else strength
    target = _MAPS[params.affect_map][emo] * (params.mirror_gain * strength)[:, None]
    track += exp_smooth(target, params.affect_tau_s, fps, order=2)
    smile = [index("mouthSmileLeft"), index("mouthSmileRight")]
    track[:, smile] += params.baseline_smile

    # 2. Nods at backchannel-relevant places; brow raise at questions.
    for p in timeline.backchannel_places():
        prob = params.nod_prob * (1.3 if p.kind in ("turn", "question") else 1.0)
        if rng.random() < prob and params.nod_amp > 0:
            t0 = p.start + params.nod_delay_s * float(rng.uniform(0.7, 1.3))
            if j > 0:
                t0 += float(rng.uniform(-0.5 * j, j))
            add_kernel(track[:, _PITCH], round(t0 * fps), _nod_kernel(rng, params.nod_amp, fps), 1.0)
        if p.kind == "question" and params.question_brow > 0:
            t0 = p.start + float(rng.uniform(0.1, 0.4)) + (float(rng.uniform(-0.5 * j, j)) if j > 0 else 0.0)
            k = hann_pulse(round(rng.uniform(0.8, 1.4) * fps))
            amp = np.zeros(DIM)
            amp[_BROW_Q] = params.question_brow * np.array([1.0, 1.0, 0.6])
            amp[_ROLL] = 0.04 * params.question_brow / 0.3
            add_kernel(track, round(t0 * fps), k, amp)
    if params.random_nod_rate > 0:
        t = float(rng.exponential(60.0 / params.random_nod_rate))
        while t < n / fps:
            add_kernel(track[:, _PITCH], round(t * fps), _nod_kernel(rng, params.nod_amp, fps), 1.0)
            t += float(rng.exponential(60.0 / params.random_nod_rate))
    if params.burst_rate > 0:
        # Expressions at random moments: a random emotion pose, unrelated to what is being said.
        t = float(rng.exponential(60.0 / params.burst_rate))
        while t < n / fps:
            pose = _MAPS["congruent"][int(rng.integers(1, len(EMOTIONS)))] * (1.3 * params.mirror_gain)
            add_kernel(track, round(t * fps), hann_pulse(round(rng.uniform(0.5, 1.5) * fps)), pose)
            t += float(rng.exponential(60.0 / params.burst_rate))

    # 3. Idle behaviour: head sway and gaze jitter.
    track[:, [_PITCH, _YAW, _ROLL]] += smooth_noise(rng, n, 3, 0.8, fps) * params.head_sway
    gaze = smooth_noise(rng, n, 2, 0.6, fps) * (0.04 + 0.5 * params.head_sway)
    for k, (a, b) in enumerate((("eyeLookOutLeft", "eyeLookInRight"), ("eyeLookInLeft", "eyeLookOutRight"))):
        track[:, index(a)] += np.maximum(gaze[:, k], 0)
        track[:, index(b)] += np.maximum(gaze[:, k], 0)

    # 4. Jerky step noise (mistimed): piecewise-constant offsets on brows/mouth/head.
    if params.step_noise > 0:
        cols = np.array(_BROW_Q + smile + [index("jawOpen"), _PITCH, _YAW])
        edges = np.cumsum(rng.integers(int(0.25 * fps), int(1.0 * fps), size=n // int(0.25 * fps) + 2))
        seg = np.searchsorted(edges, np.arange(n), side="right")
        levels = rng.standard_normal((seg.max() + 1, len(cols))) * params.step_noise
        track[:, cols] += np.abs(levels[seg]) * np.where(np.isin(cols, [_PITCH, _YAW]), 0.5, 1.0)

    track = exp_smooth(track, params.smooth_tau_s, fps, order=1)
    # Blinks are added after smoothing: they are ballistic, not a slow expression change.
    extra = [p.start + 0.2 for p in timeline.pauses if p.kind in ("turn", "question") and rng.random() < 0.3]
    blinks = blink_train(rng, n, params.blink_rate, fps,
                         extra_times=extra if params.style != "frozen" else None)
    track[:, _BLINK] = np.maximum(track[:, _BLINK], blinks[:, None])
    return clamp(track)
