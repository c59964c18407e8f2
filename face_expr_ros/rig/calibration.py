"""Observation model of the tracker: what MediaPipe's landmarks report for each channel.

The model basis says how the face *surface* moves. MediaPipe's landmark regressor does not
follow every surface motion one-to-one: it is trained with a strong face-shape prior, so it
under-reports, for example, eyelid closure, brow travel and head rotation (on the photo
avatar a 17 deg yaw reads as about 14.5 deg, an 0.8 blink as about 0.2 of the model's
eyelid travel). Fitting the surface basis to landmarks therefore underestimates weights.

This module measures the detector's response instead, by analysis-by-synthesis: each
observed channel is rendered alone with the photo avatar at weights 0.2, 0.4, 0.6, 0.8 (head
frontal), landmarks are detected and rigidly aligned, and the per-vertex least-squares
slope of landmark offset against weight becomes that channel's *observation field*
``B_obs[c]`` (the Jacobian of detector output w.r.t. the weight, linearised). Left/right
fields are averaged with their mirror twins to halve detector noise. The head-rotation
gains (reported / rendered angle) are measured from renders at +-15 deg of pitch, yaw and
roll. The tracker fits ``B_obs`` and divides angles by the gains.

Calibration uses only single-channel frontal renders; the round-trip benchmark evaluates on
random multi-channel combinations with random head poses and a different random stream,
so it tests generalisation of this linear observation model, not memorisation.

Stored in ``rig/data/face_observation.npz``; regenerate with
``python -m face_expr_ros.rig.calibration`` (needs MediaPipe; results may differ in the
last bits between CPUs, like any MediaPipe output).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from face_expr_ros.expression import ARKIT_BLENDSHAPES, DIM, N_BLENDSHAPES, index
from face_expr_ros.rig.model import FaceModel, load_model

OBS_PATH = Path(__file__).resolve().parent / "data" / "face_observation.npz"
CAL_WEIGHTS = (0.2, 0.4, 0.6, 0.8)
CAL_ANGLE = np.deg2rad(15.0)


POSE_GRID_DEG = (-20.0, -10.0, 0.0, 10.0, 20.0)


@dataclass(frozen=True)
class ObservationModel:
    """What the detector reports, in the model frame after rigid alignment.

    ``neutral`` (V, 3): the aligned landmarks of the neutral render. ``basis`` (52, V, 3):
    response per unit weight. ``angle_gain`` and ``angle_offset`` (pitch, yaw, roll):
    reported = gain * true + offset. ``pose_fields`` (5, V, 3): how the aligned neutral
    landmarks drift with head pose, as a quadratic in (pitch, yaw) radians with terms
    ``[p, y, p^2, y^2, p*y]`` (:func:`pose_terms`): the detector's shape prior distorts
    turned faces in a systematic way that would otherwise read as expression.
    """

    neutral: NDArray[np.float64]
    basis: NDArray[np.float64]
    angle_gain: NDArray[np.float64]
    angle_offset: NDArray[np.float64]
    pose_fields: NDArray[np.float64]


def pose_terms(pitch: float, yaw: float) -> NDArray[np.float64]:
    """Regressors of the pose-drift quadratic (see :class:`ObservationModel`)."""
    return np.array([pitch, yaw, pitch * pitch, yaw * yaw, pitch * yaw])


def calibrate(model: FaceModel | None = None, refine_landmarks: bool = True) -> ObservationModel:
    """Measure the observation model with the default photo avatar and MediaPipe (a few seconds)."""
    from face_expr_ros.perception.face_tracker import ExpressionFitter, LandmarkDetector
    from face_expr_ros.rig.render import PhotoRenderer

    model = model if model is not None else load_model()
    renderer = PhotoRenderer(model=model)
    detector = LandmarkDetector(static_image_mode=True, refine_landmarks=refine_landmarks)
    fitter = ExpressionFitter(model, adapt_neutral=False, basis="model")

    def observe(frame: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        lm = detector.detect(renderer.render(frame))
        if lm is None:
            raise RuntimeError("calibration render lost the face")
        fit = fitter.fit(lm)
        return fit.aligned, np.array([fit.pitch, fit.yaw, fit.roll])

    try:
        zero = np.zeros(DIM, dtype=np.float32)
        base, base_pose = observe(zero)
        obs = np.zeros_like(model.basis)
        ws = np.array(CAL_WEIGHTS)
        for c in range(N_BLENDSHAPES):
            if not np.any(model.basis[c]):
                continue
            offs = []
            for w in ws:
                f = zero.copy()
                f[c] = w
                offs.append(observe(f)[0] - base)
            # Least-squares slope through the origin: sum_i w_i d_i / sum_i w_i^2.
            obs[c] = np.tensordot(ws, np.stack(offs), axes=1) / float(ws @ ws)
        gains = np.ones(3)
        for k, name in enumerate(("headPitch", "headYaw", "headRoll")):
            vals = []
            for sign in (1.0, -1.0):
                f = zero.copy()
                f[index(name)] = sign * CAL_ANGLE
                vals.append(sign * (observe(f)[1][k] - base_pose[k]) / CAL_ANGLE)
            gains[k] = float(np.mean(vals))
        rows, drift = [], []
        for p_deg in POSE_GRID_DEG:
            for y_deg in POSE_GRID_DEG:
                f = zero.copy()
                f[index("headPitch")], f[index("headYaw")] = np.deg2rad(p_deg), np.deg2rad(y_deg)
                aligned, pose = observe(f)
                # Regress on the angles the tracker will see (after gain and offset), not the true ones.
                seen = (pose - base_pose) / gains
                rows.append(pose_terms(seen[0], seen[1]))
                drift.append((aligned - base).ravel())
        coef, *_ = np.linalg.lstsq(np.array(rows), np.array(drift), rcond=None)
        pose_fields = coef.reshape(len(rows[0]), -1, 3)
    finally:
        detector.close()
    return ObservationModel(base, _symmetrise(obs, model.mirror), gains, base_pose, pose_fields)


def _symmetrise(obs: NDArray[np.float64], mirror: NDArray[np.int64]) -> NDArray[np.float64]:
    from face_expr_ros.rig.basis import mirror_field

    out = obs.copy()
    for c, name in enumerate(ARKIT_BLENDSHAPES):
        twin = {"Left": "Right", "Right": "Left"}
        if name.endswith("Left") or name.endswith("Right"):
            side = "Left" if name.endswith("Left") else "Right"
            other = index(name[: -len(side)] + twin[side])
            out[c] = 0.5 * (obs[c] + mirror_field(obs[other], mirror))
        else:
            out[c] = 0.5 * (obs[c] + mirror_field(obs[c], mirror))
    return out


def save(obs: ObservationModel, path: Path = OBS_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        neutral=obs.neutral,
        basis=obs.basis,
        angle_gain=obs.angle_gain,
        angle_offset=obs.angle_offset,
        pose_fields=obs.pose_fields,
        channel_names=np.array(ARKIT_BLENDSHAPES),
    )


@lru_cache(maxsize=2)
def load_observation_model(path: str | None = None) -> ObservationModel | None:
    """The stored observation model, or None when it has not been calibrated."""
    p = Path(path) if path else OBS_PATH
    if not p.exists():
        return None
    with np.load(p, allow_pickle=False) as z:
        if tuple(str(n) for n in z["channel_names"]) != ARKIT_BLENDSHAPES or z["basis"].shape[0] != N_BLENDSHAPES:
            raise ValueError(f"{p} was built for a different channel list; recalibrate")
        return ObservationModel(z["neutral"], z["basis"], z["angle_gain"], z["angle_offset"], z["pose_fields"])


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description="Recalibrate the tracker's observation model " + str(OBS_PATH)).parse_args(
        argv
    )
    obs = calibrate()
    save(obs)
    load_observation_model.cache_clear()
    mags = np.linalg.norm(obs.basis, axis=2).max(axis=1)
    print(f"wrote {OBS_PATH}; angle gains (pitch, yaw, roll) = {np.round(obs.angle_gain, 3).tolist()}, "
          f"offsets (deg) = {np.round(np.rad2deg(obs.angle_offset), 2).tolist()}")
    for name, m in zip(ARKIT_BLENDSHAPES, mags):
        if m > 0:
            print(f"  {name:22s} max landmark response {m:5.2f} mm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
