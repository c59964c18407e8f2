"""Observation model of the tracker: what MediaPipe's landmarks report for mixed expressions.

The model basis says how the face *surface* moves. MediaPipe's landmark regressor does not
follow every surface motion one-to-one: it is trained with a strong face-shape prior, so it
under-reports eyelid closure, brow travel and head rotation, and its response to one region
changes when another region is active (an open jaw damps the mouth corners, a lowered brow
the lids). A model calibrated on single-channel renders therefore does not carry over to
mixed expressions.

This module measures the detector's response on random *mixtures* instead, by
analysis-by-synthesis: ``n_frames`` frames are drawn from the round-trip distribution
(:func:`face_expr_ros.rig.roundtrip.sample_frames`, all scored channels uniform in
[0, 0.8], distractors sparse, head pitch/yaw within +-20 deg) with a calibration seed that
the benchmark does not use, rendered with the photo avatar, and passed through MediaPipe.
Landmarks are rigidly aligned (Umeyama 1991) exactly as the tracker aligns them. Then:

1. **Head angles**: a linear map ``true = [reported, 1] @ angle_map`` (least squares; the
   detector under-reports rotation by ~15 % and couples pitch with yaw slightly).
2. **Observation basis**: multi-output ridge regression (Hoerl & Kennard 1970) of the
   aligned landmarks ``x`` (1404 outputs) on the weights of every observable channel plus
   the pose-drift terms ``[p, y, p^2, y^2, p*y]`` and an intercept:
   ``x ~ n_obs + B_obs^T w + P^T pose_terms``. The intercept is the observed neutral, ``B_obs``
   the detector's average linear response per channel *in the presence of the others*, ``P``
   the systematic distortion of turned faces. Alignment and regression are iterated twice,
   the second time aligning on the observed neutral (the tracker's template).
3. **Read-out**: the tracker's bounded least-squares fit on ``B_obs`` (stateless) gives
   first-stage weights ``w_fit`` for every calibration frame; a ridge regression from the
   features ``[x - n_obs - P^T pose_terms, s * w_fit, 1]`` to the true weights then gives a
   linear read-out. It corrects the fit's shrinkage and cross-talk between channels whose
   landmark responses overlap (smile vs. jaw at the mouth corners), which a generative fit
   on a linear basis cannot undo. Channels whose calibrated peak response is below
   ``MIN_RESPONSE_MM`` are not read out (reported 0).

Caveat: the calibration renders are of the *same photo* (the default astronaut) with the
*same renderer* as the round-trip benchmark; only the random stream differs. The numbers
therefore measure generalisation to new weight combinations and poses, not to new faces,
lighting or real video, where the read-out is an untested extrapolation.

Stored in ``rig/data/face_observation.npz`` (float32); regenerate with
``python -m face_expr_ros.rig.calibration`` (about two minutes on two cores; needs MediaPipe,
whose output may differ in the last bits between CPUs).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from face_expr_ros.expression import ARKIT_BLENDSHAPES, N_BLENDSHAPES
from face_expr_ros.rig.model import FaceModel, load_model

OBS_PATH = Path(__file__).resolve().parent / "data" / "face_observation.npz"
CAL_FRAMES = 3000
CAL_SEED = 7  # the round-trip benchmark uses 2024, the tests 11 and 23
CAL_CO_ACTIVE = 0.0  # fraction of calibration frames with antagonists co-active (0.5 was tried: see docs)
MIN_RESPONSE_MM = 2.0
BASIS_RIDGE = 1e-3
READOUT_RIDGE = 10.0
READOUT_FIT_SCALE = 10.0  # weight of the first-stage fit against landmark millimetres in the read-out


@dataclass(frozen=True)
class ObservationModel:
    """What the detector reports, in the model frame after rigid alignment.

    ``neutral`` (V, 3): aligned landmarks of the neutral face. ``basis`` (52, V, 3): average
    response per unit weight (zero for channels not calibrated). ``angle_map`` (4, 3):
    ``true (pitch, yaw, roll) = [reported pitch, yaw, roll, 1] @ angle_map``. ``pose_fields``
    (5, V, 3): drift of the aligned landmarks with head pose, a quadratic in the corrected
    (pitch, yaw) in radians with terms :func:`pose_terms`. ``channels`` (K,): the channels
    the tracker fits and reads out. ``readout`` (3V + K + 1, K) and ``readout_scale``: the
    linear read-out (see the module docstring), or an empty array for none.
    """

    neutral: NDArray[np.float64]
    basis: NDArray[np.float64]
    angle_map: NDArray[np.float64]
    pose_fields: NDArray[np.float64]
    channels: NDArray[np.int64]
    readout: NDArray[np.float64]
    readout_scale: float = READOUT_FIT_SCALE


def pose_terms(pitch: float, yaw: float) -> NDArray[np.float64]:
    """Regressors of the pose-drift quadratic (see :class:`ObservationModel`)."""
    return np.array([pitch, yaw, pitch * pitch, yaw * yaw, pitch * yaw])


def _pose_terms_many(angles: NDArray[np.float64]) -> NDArray[np.float64]:
    p, y = angles[:, 0], angles[:, 1]
    return np.column_stack([p, y, p * p, y * y, p * y])


def _detect_chunk(frames: NDArray[np.float32]) -> NDArray[np.float64]:
    """Render ``frames`` with the default photo avatar and detect landmarks (NaN where no face)."""
    from face_expr_ros.perception.face_tracker import LandmarkDetector
    from face_expr_ros.rig.render import PhotoRenderer

    renderer = PhotoRenderer()
    detector = LandmarkDetector(static_image_mode=True, refine_landmarks=True)
    out = np.full((len(frames), 468, 3), np.nan)
    try:
        for k, f in enumerate(frames):
            lm = detector.detect(renderer.render(f))
            if lm is not None:
                out[k] = lm[:468]
    finally:
        detector.close()
    return out


def render_and_detect(frames: NDArray[np.float32], workers: int = 2) -> NDArray[np.float64]:
    """Landmarks (N, 468, 3) of photo-avatar renders of ``frames``, in ``workers`` processes."""
    if workers <= 1:
        return _detect_chunk(frames)
    import multiprocessing as mp

    chunks = np.array_split(frames, workers)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        return np.concatenate(list(pool.map(_detect_chunk, chunks)))


def _ridge(x: NDArray[np.float64], y: NDArray[np.float64], lam: float) -> NDArray[np.float64]:
    """Ridge regression ``argmin |X C - Y|^2 + lam |C|^2`` (intercept column excluded from the penalty)."""
    pen = lam * np.eye(x.shape[1])
    pen[-1, -1] = 0.0  # last column is the intercept
    return np.linalg.solve(x.T @ x + pen, x.T @ y)


def fit_observation_model(
    frames: NDArray[np.float32], landmarks: NDArray[np.float64], model: FaceModel | None = None
) -> ObservationModel:
    """Fit the observation model from rendered ``frames`` (N, 55) and their detected ``landmarks``."""
    from face_expr_ros.perception.face_tracker import ExpressionFitter
    from face_expr_ros.rig.pose import Similarity, image_to_canonical, pose_from_rotation, umeyama

    model = model if model is not None else load_model()
    ok = np.isfinite(landmarks).all(axis=(1, 2))
    frames, landmarks = frames[ok].astype(np.float64), landmarks[ok]
    n, nv = len(frames), model.n_vertices
    observed = np.flatnonzero(np.abs(model.basis).reshape(N_BLENDSHAPES, -1).max(axis=1) > 0)
    st, sw = model.stable_vertices, model.stable_weights
    canon = image_to_canonical(landmarks)
    template = model.neutral
    for _ in range(2):
        aligned = np.empty((n, nv, 3))
        reported = np.empty((n, 3))
        for k in range(n):
            sim: Similarity = umeyama(template[st], canon[k, st], sw)
            aligned[k] = sim.invert(canon[k])
            reported[k] = pose_from_rotation(sim.rotation)
        angle_map, *_ = np.linalg.lstsq(np.column_stack([reported, np.ones(n)]), frames[:, -3:], rcond=None)
        angles = np.column_stack([reported, np.ones(n)]) @ angle_map
        design = np.column_stack([frames[:, observed], _pose_terms_many(angles), np.ones(n)])
        coef = _ridge(design, aligned.reshape(n, -1), BASIS_RIDGE)
        template = coef[-1].reshape(nv, 3)
    basis = np.zeros((N_BLENDSHAPES, nv, 3))
    basis[observed] = coef[: len(observed)].reshape(len(observed), nv, 3)
    pose_fields = coef[len(observed): -1].reshape(5, nv, 3)
    response = np.linalg.norm(basis, axis=2).max(axis=1)
    channels = observed[response[observed] >= MIN_RESPONSE_MM]
    obs = ObservationModel(template, basis, angle_map, pose_fields, channels, np.zeros((0, len(channels))))
    # First-stage fits of the calibration frames (stateless), then the read-out regression.
    fitter = ExpressionFitter(model, adapt_neutral=False, observation=obs)
    feats = np.empty((n, 3 * nv + len(channels) + 1))
    for k in range(n):
        fit = fitter.fit(landmarks[k])
        feats[k] = fitter.readout_features(fit)
    readout = _ridge(feats, frames[:, channels], READOUT_RIDGE)
    return ObservationModel(template, basis, angle_map, pose_fields, channels, readout)


def calibrate(n_frames: int = CAL_FRAMES, seed: int = CAL_SEED, workers: int = 2) -> ObservationModel:
    """Render, detect and fit the observation model (see the module docstring).

    With ``workers > 1`` the renders run in spawned processes, so a calling script needs the
    usual ``if __name__ == "__main__":`` guard.
    """
    from face_expr_ros.rig.roundtrip import sample_frames

    model = load_model()
    frames = sample_frames(n_frames, seed, model.observed_channels(), co_active=CAL_CO_ACTIVE)
    landmarks = render_and_detect(frames, workers)
    return fit_observation_model(frames, landmarks, model)


def save(obs: ObservationModel, path: Path = OBS_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        neutral=obs.neutral.astype(np.float32),
        basis=obs.basis[obs.channels].astype(np.float32),
        angle_map=obs.angle_map.astype(np.float32),
        pose_fields=obs.pose_fields.astype(np.float32),
        channels=obs.channels.astype(np.int16),
        readout=obs.readout.astype(np.float32),
        readout_scale=np.float32(obs.readout_scale),
        channel_names=np.array(ARKIT_BLENDSHAPES),
    )


@lru_cache(maxsize=2)
def load_observation_model(path: str | None = None) -> ObservationModel | None:
    """The stored observation model, or None when it has not been calibrated."""
    p = Path(path) if path else OBS_PATH
    if not p.exists():
        return None
    with np.load(p, allow_pickle=False) as z:
        if tuple(str(n) for n in z["channel_names"]) != ARKIT_BLENDSHAPES or "readout" not in z:
            raise ValueError(f"{p} was built for a different channel list or format; recalibrate")
        channels = z["channels"].astype(np.int64)
        stored = z["basis"].astype(np.float64)
        basis = np.zeros((N_BLENDSHAPES, *stored.shape[1:]))
        basis[channels] = stored
        return ObservationModel(
            z["neutral"].astype(np.float64), basis, z["angle_map"].astype(np.float64),
            z["pose_fields"].astype(np.float64), channels, z["readout"].astype(np.float64),
            float(z["readout_scale"]),
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Recalibrate the tracker's observation model " + str(OBS_PATH))
    ap.add_argument("--frames", type=int, default=CAL_FRAMES)
    ap.add_argument("--seed", type=int, default=CAL_SEED)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    obs = calibrate(args.frames, args.seed, args.workers)
    save(obs)
    load_observation_model.cache_clear()
    gains = np.diag(np.linalg.inv(obs.angle_map[:3]))
    print(f"wrote {OBS_PATH}: {args.frames} frames, seed {args.seed}; detector angle gains "
          f"(pitch, yaw, roll) = {np.round(gains, 3).tolist()}")
    mags = np.linalg.norm(obs.basis, axis=2).max(axis=1)
    for c in np.flatnonzero(mags > 0):
        tag = "read out" if c in obs.channels else "below threshold, reported 0"
        print(f"  {ARKIT_BLENDSHAPES[c]:22s} mean landmark response {mags[c]:5.2f} mm  ({tag})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
