"""The speaker's face: a T x 55 expression track at 30 fps driven by a speech timeline.

Components (added, then clamped to the expression ranges):

* Mouth: each word's syllables get nuclei evenly spaced in the word; each nucleus is a
  raised-cosine jaw opening lasting one syllable, whose amplitude and lip shape depend on the
  vowel letters (a -> wide open, o/u -> funnel/pucker, e/i -> spread, little opening). Words
  starting with a bilabial (m, b, p) close the lips at onset. With audio, the jaw follows
  ``0.5 * syllable model + 0.5 * RMS envelope`` so that it tracks the actual loudness.
* Emotion display per utterance (persisting into the following pause, onset and offset
  smoothed with a critically damped filter, tau 0.25 s), poses after the prototypes of
  Ekman & Friesen's FACS: joy -> smile + cheekSquint; sadness -> frown + browInnerUp;
  anger -> browDown + mouthPress + noseSneer; surprise -> eyeWide + browOuterUp + jawOpen;
  fear -> eyeWide + browInnerUp + mouthStretch. Scaled by the speaker's expressivity.
* Blinks: Poisson, per-speaker rate, 100-150 ms.
* Head: smooth random walk (critically damped filtered noise, tau 0.6 s) with per-speaker
  amplitude, plus emphasis nods (headPitch > 0 bump) at utterance onsets and on ~15 % of
  long words.
"""

from __future__ import annotations

import re

import numpy as np
from numpy.typing import NDArray

from face_expr_ros.expression import DIM, FPS, clamp, from_dict, index
from face_expr_ros.sim._dsp import add_kernel, blink_train, exp_smooth, hann_pulse, smooth_noise
from face_expr_ros.sim.scripts import EMOTIONS, SpeakerProfile
from face_expr_ros.sim.speech import Timeline, energy_envelope

EMOTION_POSES: dict[str, NDArray[np.float32]] = {
    "neutral": from_dict({}),
    "joy": from_dict({"mouthSmileLeft": 0.6, "mouthSmileRight": 0.6, "cheekSquintLeft": 0.4,
                      "cheekSquintRight": 0.4, "eyeSquintLeft": 0.2, "eyeSquintRight": 0.2,
                      "mouthDimpleLeft": 0.15, "mouthDimpleRight": 0.15}),
    "sadness": from_dict({"mouthFrownLeft": 0.45, "mouthFrownRight": 0.45, "browInnerUp": 0.55,
                          "mouthShrugLower": 0.2, "eyeLookDownLeft": 0.2, "eyeLookDownRight": 0.2}),
    "anger": from_dict({"browDownLeft": 0.6, "browDownRight": 0.6, "mouthPressLeft": 0.4,
                        "mouthPressRight": 0.4, "noseSneerLeft": 0.35, "noseSneerRight": 0.35,
                        "eyeSquintLeft": 0.3, "eyeSquintRight": 0.3}),
    "surprise": from_dict({"eyeWideLeft": 0.6, "eyeWideRight": 0.6, "browOuterUpLeft": 0.6,
                           "browOuterUpRight": 0.6, "browInnerUp": 0.4, "jawOpen": 0.15}),
    "fear": from_dict({"eyeWideLeft": 0.55, "eyeWideRight": 0.55, "browInnerUp": 0.6,
                       "mouthStretchLeft": 0.4, "mouthStretchRight": 0.4, "browDownLeft": 0.1,
                       "browDownRight": 0.1}),
}
POSE_MATRIX: NDArray[np.float64] = np.stack([EMOTION_POSES[e] for e in EMOTIONS]).astype(np.float64)

_J = index("jawOpen")
_CLOSE = index("mouthClose")
_FUN = index("mouthFunnel")
_PUCK = index("mouthPucker")
_STR = [index("mouthStretchLeft"), index("mouthStretchRight")]
_LOWER = [index("mouthLowerDownLeft"), index("mouthLowerDownRight")]
_BLINK = [index("eyeBlinkLeft"), index("eyeBlinkRight")]
_PITCH, _YAW, _ROLL = index("headPitch"), index("headYaw"), index("headRoll")
_VOWELS = re.compile(r"[aeiouy]+")


def _vowel_shape(group: str) -> tuple[float, float, float]:
    """(jaw opening, rounding, spreading) of a vowel letter group."""
    if "o" in group or "u" in group:
        return 0.45, 0.5, 0.0
    if "a" in group:
        return 0.65, 0.0, 0.1
    return 0.35, 0.0, 0.35


def mouth_channels(timeline: Timeline, n: int, gain: float, fps: float = FPS) -> NDArray[np.float64]:
    """(n, 55) speech articulation (jaw, lips) from word timings, zero in pauses."""
    out = np.zeros((n, DIM))
    for w in timeline.words:
        groups = _VOWELS.findall(w.word.lower()) or ["a"]
        ns = max(w.syllables, 1)
        syl = (w.end - w.start) / ns
        kern = hann_pulse(round(syl * fps * 1.3) + 1)
        for k in range(ns):
            jaw, rnd, spr = _vowel_shape(groups[k % len(groups)])
            centre = w.start + (k + 0.5) * syl
            f0 = round(centre * fps) - len(kern) // 2
            amp = np.zeros(DIM)
            amp[_J] = jaw * gain
            amp[_FUN] = 0.6 * rnd * gain
            amp[_PUCK] = 0.4 * rnd * gain
            amp[_STR] = 0.3 * spr * gain
            amp[_LOWER] = 0.3 * jaw * gain
            add_kernel(out, f0, kern, amp)
        if w.word[:1].lower() in "mbp":
            add_kernel(out[:, _CLOSE], round(w.start * fps) - 1, hann_pulse(4), 0.5)
    return out


def emotion_channels(timeline: Timeline, n: int, intensity: NDArray[np.float64] | float, fps: float = FPS,
                     tau_s: float = 0.25) -> NDArray[np.float64]:
    """(n, 55) smoothed emotion display following the timeline's utterance emotions."""
    emo = timeline.emotion_index(fps)[:n]
    target = POSE_MATRIX[emo] * np.asarray(intensity, dtype=np.float64).reshape(-1, 1)
    return exp_smooth(target, tau_s, fps, order=2)


def speaker_track(timeline: Timeline, profile: SpeakerProfile, seed: int,
                  audio: NDArray[np.int16] | None = None, fps: float = FPS) -> NDArray[np.float32]:
    """The speaker's T x 55 expression track (see the module docstring); deterministic in ``seed``."""
    rng = np.random.default_rng([seed, 0x5BEA])
    n = timeline.n_frames(fps)
    track = mouth_channels(timeline, n, profile.mouth_gain, fps)
    if audio is not None and len(audio):
        env = energy_envelope(audio, n, timeline.sample_rate, fps).astype(np.float64)
        track[:, _J] = 0.5 * track[:, _J] + 0.5 * 0.6 * profile.mouth_gain * exp_smooth(env, 0.03, fps)
    # Per-utterance intensity varies around the speaker's expressivity.
    ui = timeline.utterance_index(fps)
    per_utt = profile.expressivity * rng.uniform(0.7, 1.1, size=len(timeline.utterances) + 1)
    intensity = np.where(ui >= 0, per_utt[np.maximum(ui, 0)], 0.0)
    track += emotion_channels(timeline, n, intensity, fps)
    smile = [index("mouthSmileLeft"), index("mouthSmileRight")]
    track[:, smile] += profile.smile_bias
    blinks = blink_train(rng, n, profile.blink_rate, fps)
    track[:, _BLINK] = np.maximum(track[:, _BLINK], blinks[:, None])
    # Gaze wanders a little while speaking (people look away when formulating; Kendon 1967).
    gaze = smooth_noise(rng, n, 2, 0.8, fps) * 0.08
    look = [("eyeLookOutLeft", "eyeLookInRight"), ("eyeLookInLeft", "eyeLookOutRight")]
    for k, (a, b) in enumerate(look):
        track[:, index(a)] += np.maximum(gaze[:, k], 0)
        track[:, index(b)] += np.maximum(gaze[:, k], 0)
    head = smooth_noise(rng, n, 3, 0.6, fps) * profile.head_amp * np.array([1.0, 1.2, 0.6])
    track[:, [_PITCH, _YAW, _ROLL]] += head
    nod = hann_pulse(int(0.35 * fps))
    for u in timeline.utterances:
        add_kernel(track[:, _PITCH], round(u.start * fps), nod, float(rng.uniform(0.03, 0.07)))
    for w in timeline.words:
        if w.syllables >= 2 and rng.random() < 0.15:
            add_kernel(track[:, _PITCH], round(w.start * fps), nod, float(rng.uniform(0.02, 0.05)))
    return clamp(track)
