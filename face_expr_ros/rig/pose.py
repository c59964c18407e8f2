"""Head pose and rigid alignment in the canonical face frame.

Canonical face frame (right-handed, millimetres): ``x`` towards the person's left (image
right for a camera facing them), ``y`` up, ``z`` out of the face towards the camera.
Image pixels map to this frame as ``(u, v, depth) -> (u, -v, -depth)``.

Head rotation, with the sign conventions of :mod:`face_expr_ros.expression`
(pitch > 0 chin down, yaw > 0 face turns to the person's left, roll > 0 head tilts to the
person's left shoulder), is the intrinsic yaw-pitch-roll product

    R = R_y(yaw) @ R_x(pitch) @ R_z(-roll)

where ``R_x``, ``R_y``, ``R_z`` are the usual right-handed elementary rotations. With that
order yaw is about the neck's vertical axis, pitch about the head-fixed ear-to-ear axis and
roll about the head-fixed nose axis, which is how a neck actuator chain is usually built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _rx(a: float) -> NDArray[np.float64]:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> NDArray[np.float64]:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> NDArray[np.float64]:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_from_pose(pitch: float, yaw: float, roll: float) -> NDArray[np.float64]:
    """3x3 rotation of the head for ``(headPitch, headYaw, headRoll)`` in radians."""
    return _ry(float(yaw)) @ _rx(float(pitch)) @ _rz(-float(roll))


def pose_from_rotation(r: ArrayLike) -> tuple[float, float, float]:
    """Inverse of :func:`rotation_from_pose`: ``(pitch, yaw, roll)`` in radians.

    For R = R_y(a) R_x(b) R_z(c): R[1,2] = -sin b, R[0,2] = cos b sin a, R[2,2] = cos b cos a,
    R[1,0] = cos b sin c, R[1,1] = cos b cos c (c = -roll).
    """
    m = np.asarray(r, dtype=np.float64)
    pitch = float(np.arcsin(np.clip(-m[1, 2], -1.0, 1.0)))
    yaw = float(np.arctan2(m[0, 2], m[2, 2]))
    roll = float(-np.arctan2(m[1, 0], m[1, 1]))
    return pitch, yaw, roll


@dataclass(frozen=True)
class Similarity:
    """``x -> scale * rotation @ x + translation`` for row-vector point sets."""

    scale: float
    rotation: NDArray[np.float64]
    translation: NDArray[np.float64]

    def apply(self, points: NDArray[np.floating]) -> NDArray[np.float64]:
        return self.scale * (np.asarray(points, dtype=np.float64) @ self.rotation.T) + self.translation

    def invert(self, points: NDArray[np.floating]) -> NDArray[np.float64]:
        return ((np.asarray(points, dtype=np.float64) - self.translation) @ self.rotation) / self.scale


def umeyama(
    src: NDArray[np.floating], dst: NDArray[np.floating], weights: NDArray[np.floating] | None = None
) -> Similarity:
    """Weighted least-squares similarity ``dst ~ s R src + t`` (Umeyama 1991, IEEE TPAMI 13(4)).

    Minimises ``sum_i w_i |dst_i - (s R src_i + t)|^2`` in closed form via the SVD of the
    weighted cross-covariance; the sign correction keeps ``R`` a proper rotation.
    """
    x = np.asarray(src, dtype=np.float64)
    y = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mx, my = w @ x, w @ y
    xc, yc = x - mx, y - my
    cov = (yc * w[:, None]).T @ xc
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = (u * sign) @ vt
    var_x = float(w @ (xc**2).sum(axis=1))
    scale = float((d * sign).sum() / var_x)
    return Similarity(scale, rot, my - scale * (rot @ mx))


def image_to_canonical(points: NDArray[np.floating]) -> NDArray[np.float64]:
    """Pixel coordinates ``(u, v, depth)`` (depth grows away from the camera) to canonical axes."""
    p = np.asarray(points, dtype=np.float64)
    return p * np.array([1.0, -1.0, -1.0])


canonical_to_image = image_to_canonical  # the axis flip is its own inverse
