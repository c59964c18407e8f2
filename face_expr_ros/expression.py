"""The expression space: the single definition of what one frame of a face is.

A frame is 55 numbers: the 52 ARKit blendshape weights in Apple's order
(``ARFaceAnchor.BlendShapeLocation``, as also used by Live Link Face and MediaPipe's
blendshape head), each in [0, 1], followed by the head rotation ``headPitch``,
``headYaw``, ``headRoll`` in radians. They are the expression coefficients of a linear
3D morphable model whose basis carries the ARKit semantics, so the same vector drives a
mesh avatar, a photo avatar or a robot face, and carries no identity.

Sign conventions for the head (right-handed, camera looking at the face):
``headPitch`` > 0 is chin down (a nod), ``headYaw`` > 0 turns the face towards the
person's own left, ``headRoll`` > 0 tilts the head towards the person's own left shoulder.

Every other module imports names, order, ranges and clamping from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from numpy.typing import ArrayLike, NDArray

ARKIT_BLENDSHAPES: tuple[str, ...] = (
    "eyeBlinkLeft",
    "eyeLookDownLeft",
    "eyeLookInLeft",
    "eyeLookOutLeft",
    "eyeLookUpLeft",
    "eyeSquintLeft",
    "eyeWideLeft",
    "eyeBlinkRight",
    "eyeLookDownRight",
    "eyeLookInRight",
    "eyeLookOutRight",
    "eyeLookUpRight",
    "eyeSquintRight",
    "eyeWideRight",
    "jawForward",
    "jawLeft",
    "jawRight",
    "jawOpen",
    "mouthClose",
    "mouthFunnel",
    "mouthPucker",
    "mouthLeft",
    "mouthRight",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "mouthDimpleLeft",
    "mouthDimpleRight",
    "mouthStretchLeft",
    "mouthStretchRight",
    "mouthRollLower",
    "mouthRollUpper",
    "mouthShrugLower",
    "mouthShrugUpper",
    "mouthPressLeft",
    "mouthPressRight",
    "mouthLowerDownLeft",
    "mouthLowerDownRight",
    "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "cheekPuff",
    "cheekSquintLeft",
    "cheekSquintRight",
    "noseSneerLeft",
    "noseSneerRight",
    "tongueOut",
)
HEAD_POSE: tuple[str, ...] = ("headPitch", "headYaw", "headRoll")
EXPRESSION_NAMES: tuple[str, ...] = ARKIT_BLENDSHAPES + HEAD_POSE

N_BLENDSHAPES = len(ARKIT_BLENDSHAPES)  # 52
DIM = len(EXPRESSION_NAMES)  # 55
FPS = 30.0
HEAD_SLICE = slice(N_BLENDSHAPES, DIM)
BLENDSHAPE_SLICE = slice(0, N_BLENDSHAPES)

# Head limits in radians: pitch +-60 deg, yaw +-80 deg, roll +-45 deg, the range in which
# a frontal face tracker still sees a face and a neck actuator is commonly built for.
HEAD_LIMITS: dict[str, tuple[float, float]] = {
    "headPitch": (-np.deg2rad(60.0), np.deg2rad(60.0)),
    "headYaw": (-np.deg2rad(80.0), np.deg2rad(80.0)),
    "headRoll": (-np.deg2rad(45.0), np.deg2rad(45.0)),
}
LOWER: NDArray[np.float32] = np.array(
    [0.0] * N_BLENDSHAPES + [HEAD_LIMITS[n][0] for n in HEAD_POSE], dtype=np.float32
)
UPPER: NDArray[np.float32] = np.array(
    [1.0] * N_BLENDSHAPES + [HEAD_LIMITS[n][1] for n in HEAD_POSE], dtype=np.float32
)
NEUTRAL: NDArray[np.float32] = np.zeros(DIM, dtype=np.float32)

_INDEX: dict[str, int] = {name: i for i, name in enumerate(EXPRESSION_NAMES)}


def index(name: str) -> int:
    """Position of ``name`` in the 55-d vector; raises KeyError naming close matches."""
    try:
        return _INDEX[name]
    except KeyError:
        raise KeyError(f"unknown expression channel {name!r}{_suggest(name)}") from None


def indices(names: Iterable[str]) -> list[int]:
    """Positions of several channels, in the order given."""
    return [index(n) for n in names]


# The two eyelids: blinks are events, not levels, and several stages treat them apart (the
# sampler ties them, the output filter and the calibration leave them out of their Gaussian
# treatment, the raters count blinks on them).
EYELIDS: tuple[int, ...] = tuple(indices(("eyeBlinkLeft", "eyeBlinkRight")))


def clamp(values: ArrayLike) -> NDArray[np.float32]:
    """Return a float32 copy of ``values`` (shape ``(..., 55)``) inside the valid ranges.

    Non-finite entries (NaN, +inf, -inf) become the neutral value of their channel rather
    than a bound: an undefined input must not push a face to an extreme.
    """
    # Clip in float64 first: a huge finite value must clip to its bound, not overflow to inf.
    arr = np.array(values, dtype=np.float64, copy=True)
    if arr.ndim == 0 or arr.shape[-1] != DIM:
        raise ValueError(f"expected an array whose last axis has {DIM} values, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        arr[bad] = np.broadcast_to(NEUTRAL, arr.shape)[bad]
    return np.clip(arr, LOWER, UPPER).astype(np.float32)


def is_valid(values: ArrayLike) -> bool:
    """True when ``values`` has 55 finite numbers per frame, all inside their ranges."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != DIM or not np.isfinite(arr).all():
        return False
    return bool(np.all(arr >= LOWER - 1e-6) and np.all(arr <= UPPER + 1e-6))


def to_dict(values: ArrayLike) -> dict[str, float]:
    """Name -> value mapping of one frame (values are passed through unchanged)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (DIM,):
        raise ValueError(f"expected one frame of shape ({DIM},), got shape {arr.shape}")
    return {name: float(v) for name, v in zip(EXPRESSION_NAMES, arr)}


def from_dict(mapping: Mapping[str, float], *, strict: bool = False) -> NDArray[np.float32]:
    """55-d frame from a name -> value mapping.

    Channels absent from ``mapping`` are neutral, unless ``strict`` is set, in which case
    every channel must be present. Unknown names always raise, since a misspelt channel
    silently reading as neutral is a bug that hides for a long time.
    """
    unknown = [k for k in mapping if k not in _INDEX]
    if unknown:
        raise KeyError(f"unknown expression channel(s) {unknown}{_suggest(unknown[0])}")
    if strict:
        missing = [n for n in EXPRESSION_NAMES if n not in mapping]
        if missing:
            raise KeyError(f"missing expression channel(s): {missing}")
    arr = NEUTRAL.copy()
    for name, value in mapping.items():
        arr[_INDEX[name]] = value
    return arr


def from_named(names: Iterable[str], values: Iterable[float], *, strict: bool = False) -> NDArray[np.float32]:
    """55-d frame from parallel name and value lists (e.g. a JointState message)."""
    names = list(names)
    values = list(values)
    if len(names) != len(values):
        raise ValueError(f"{len(names)} names but {len(values)} values")
    return from_dict(dict(zip(names, values)), strict=strict)


def mirror(values: ArrayLike) -> NDArray[np.float32]:
    """Left/right mirror image of frames (swap ...Left/...Right, negate yaw and roll)."""
    arr = np.array(values, dtype=np.float32, copy=True)
    out = arr.copy()
    for name, i in _INDEX.items():
        if name.endswith("Left"):
            j = _INDEX[name[:-4] + "Right"]
            out[..., i], out[..., j] = arr[..., j], arr[..., i]
    # eyeLookIn/Out keep their meaning under mirroring once left and right swap.
    out[..., _INDEX["headYaw"]] *= -1
    out[..., _INDEX["headRoll"]] *= -1
    return out


_SIDEWAYS = frozenset({"jawLeft", "jawRight", "mouthLeft", "mouthRight"})


def yoked_partner() -> NDArray[np.int64]:
    """For every channel, the channel that moves with it in a symmetric expression (itself if none).

    ``...Left`` and ``...Right`` of the same action are yoked (a smile, a brow raise), except
    gaze: the eyes turn as a pair (Hering's law of equal innervation, 1868), so looking to one
    side moves ``eyeLookInLeft`` with ``eyeLookOutRight`` and ``eyeLookOutLeft`` with
    ``eyeLookInRight``. Head pose channels, midline blendshapes (``jawOpen``) and the sideways
    shifts ``jawLeft``/``jawRight``, ``mouthLeft``/``mouthRight`` (a direction, not a side:
    antagonists that never act together) have no partner.
    """
    partner = np.arange(DIM, dtype=np.int64)
    for name, i in _INDEX.items():
        if name in _SIDEWAYS:
            continue
        if name.startswith("eyeLookIn") or name.startswith("eyeLookOut"):
            side = "Right" if name.endswith("Left") else "Left"
            other = "eyeLookOut" if name.startswith("eyeLookIn") else "eyeLookIn"
            partner[i] = _INDEX[other + side]
        elif name.endswith("Left"):
            partner[i] = _INDEX[name[:-4] + "Right"]
        elif name.endswith("Right"):
            partner[i] = _INDEX[name[:-5] + "Left"]
    return partner


def _suggest(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, EXPRESSION_NAMES, n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""
