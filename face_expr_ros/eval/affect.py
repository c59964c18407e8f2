"""Valence and arousal read off expression frames: the one definition metrics and raters share.

Valence (pleasant vs unpleasant) and arousal (activation) are the two axes of Russell's
circumplex model of affect (Russell 1980). Read from ARKit blendshapes (mean of the
left/right pair ``L/R`` where a channel is paired):

    valence = smile + 0.5 cheekSquint - frown - 0.5 browDown - 0.5 noseSneer - 0.25 mouthPress

clipped to [-1, 1]: smiles (AU12, with AU6 cheek raise for Duchenne smiles) are the display
of positive affect, lip-corner depression (AU15), brow lowering (AU4), nose wrinkling (AU9) and
lip pressing (AU24) of negative affect (Ekman & Friesen 1978). ``browInnerUp`` (AU1) is left
out on purpose: it appears in sadness and fear but also in surprise and in sympathetic
concern, so it is read separately as :func:`concern`.

    arousal = eyeWide + 0.5 browOuterUp + 0.3 browInnerUp + 0.3 mouthStretch + 0.3 browDown

clipped to [0, 1]: widened eyes and raised brows mark surprise and fear, lowered brows and
stretched lips mark anger and fear; a relaxed neutral face has arousal 0.

``EMOTION_VALENCE`` / ``EMOTION_AROUSAL`` place the categorical emotion labels on the same
axes (positions approximating Russell 1980, Fig. 2).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from face_expr_ros.expression import DIM, index

EMOTION_VALENCE: dict[str, float] = {
    "neutral": 0.0, "joy": 0.8, "sadness": -0.7, "anger": -0.6, "surprise": 0.2, "fear": -0.6,
}
EMOTION_AROUSAL: dict[str, float] = {
    "neutral": 0.0, "joy": 0.5, "sadness": -0.4, "anger": 0.8, "surprise": 0.8, "fear": 0.7,
}


def _pair(name: str) -> list[int]:
    return [index(name + "Left"), index(name + "Right")]


_VALENCE_W = np.zeros(DIM)
for _name, _w in (("mouthSmile", 1.0), ("cheekSquint", 0.5), ("mouthFrown", -1.0), ("browDown", -0.5),
                  ("noseSneer", -0.5), ("mouthPress", -0.25)):
    _VALENCE_W[_pair(_name)] = _w / 2.0
_AROUSAL_W = np.zeros(DIM)
for _name, _w in (("eyeWide", 1.0), ("browOuterUp", 0.5), ("mouthStretch", 0.3), ("browDown", 0.3)):
    _AROUSAL_W[_pair(_name)] = _w / 2.0
_AROUSAL_W[index("browInnerUp")] = 0.3
_SMILE = _pair("mouthSmile")
_INNER = index("browInnerUp")


def _frames(track: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(track, dtype=np.float64)
    if arr.shape[-1] != DIM:
        raise ValueError(f"expected frames with {DIM} values, got shape {arr.shape}")
    return arr


def valence(track: ArrayLike) -> NDArray[np.float64]:
    """Per-frame valence in [-1, 1] (formula in the module docstring); shape ``track.shape[:-1]``."""
    return np.clip(_frames(track) @ _VALENCE_W, -1.0, 1.0)


def arousal(track: ArrayLike) -> NDArray[np.float64]:
    """Per-frame arousal in [0, 1] (formula in the module docstring)."""
    return np.clip(_frames(track) @ _AROUSAL_W, 0.0, 1.0)


def smile(track: ArrayLike) -> NDArray[np.float64]:
    """Per-frame mean of mouthSmileLeft/Right."""
    return _frames(track)[..., _SMILE].mean(axis=-1)


def concern(track: ArrayLike) -> NDArray[np.float64]:
    """Per-frame sympathetic concern: browInnerUp (AU1), the 'oblique brow' of sadness/sympathy."""
    return _frames(track)[..., _INNER]


def label_valence(emotions: ArrayLike, names: tuple[str, ...]) -> NDArray[np.float64]:
    """Valence of categorical labels: ``emotions`` are indices into ``names``."""
    table = np.array([EMOTION_VALENCE[n] for n in names])
    return table[np.asarray(emotions, dtype=np.int64)]
