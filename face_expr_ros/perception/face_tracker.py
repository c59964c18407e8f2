"""Face tracking: an image in, one 55-d expression frame out.

Pipeline per frame:

1. **Landmarks.** MediaPipe Face Mesh (Kartynnik et al. 2019, "Real-time facial surface
   geometry from monocular video on mobile GPUs") gives 468 3D landmarks in pixels.
2. **Rigid alignment.** A weighted similarity (Umeyama 1991) maps the person's neutral
   shape onto the landmarks, using only vertices that expressions barely move (forehead,
   nose bridge, temples, cheekbones). Its rotation is the head pose
   (:func:`face_expr_ros.rig.pose.pose_from_rotation`); its inverse brings the landmarks into
   the canonical face frame.
3. **Expression fit.** The 52 ARKit weights solve the bounded, lightly ridge-regularised
   least-squares problem ``min_w |W (B w - (x - n))|^2 + lambda |w|^2, 0 <= w <= 1`` where
   ``B`` is the expression basis (by default the detector-space observation basis of
   :mod:`face_expr_ros.rig.calibration`), ``x`` the aligned landmarks and ``n`` the
   per-person neutral; ``W`` down-weights depth, which monocular landmarks estimate poorly.
   Since ``B`` is fixed, the normal matrix is factorised once (Cholesky) and each frame
   solves a tiny bounded problem in the reduced space with scipy's BVLS (Stark & Parker
   1995): the same minimiser at a fraction of the cost of the full 1404-row problem.
   With a calibrated observation model, a linear ridge read-out (Hoerl & Kennard 1970)
   from ``[x - n, s * w_fit, 1]`` to the weights, trained on rendered mixtures, then
   corrects the fit's shrinkage and the cross-talk of overlapping channels; the clipped
   read-out is the reported weight, while ``w_fit`` keeps driving the running neutral.
4. **Per-person running neutral.** A person's resting face differs from the model's, so
   the neutral ``n`` is learned online and robustly: the expression-free part of each frame
   ``x - B w`` pulls ``n`` with a small rate and a per-vertex clipped (Huber-like) step, and a
   leaky per-channel floor of the weights (the lowest weight seen recently) moves ``n``
   along that channel's field, because a channel that never reads below ``f`` means the
   neutral itself carries ``f`` of it. Only the floor above a dead band (0.08) is moved:
   the leaky minimum of a channel that is never exactly 0 (an ever-moving jaw, or noise)
   settles near ``sqrt(leak * range)``, and shifting by that on every frame would let the
   neutral drift along the channel without bound. Nonnegative weights are what make the neutral
   identifiable along the basis directions at all (cf. the neutral re-estimation of
   Bouaziz, Wang & Pauly 2013, "Online modeling for realtime facial animation").

With ``adapt_neutral=False`` (or :meth:`FaceTracker.analyze`), a frame is fitted against the
model's neutral alone: the stateless single-image mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from face_expr_ros.expression import DIM, N_BLENDSHAPES, NEUTRAL, clamp, index
from face_expr_ros.rig.calibration import ObservationModel, load_observation_model, pose_terms
from face_expr_ros.rig.model import FaceModel, load_model
from face_expr_ros.rig.pose import Similarity, image_to_canonical, pose_from_rotation, umeyama

ChannelOrder = Literal["rgb", "bgr"]
_ACCEPTED_DTYPES = (np.uint8, np.float32, np.float64)


def validate_image(image: object, channel_order: ChannelOrder = "rgb") -> NDArray[np.uint8]:
    """Return a contiguous RGB uint8 (H, W, 3) copy of ``image`` or raise a ValueError naming the problem.

    Accepted: grey (H, W) or (H, W, 1); 3 channels in ``channel_order``; 4 channels (RGBA or
    BGRA, alpha dropped). uint8, or float32/float64 with values in [0, 1].
    """
    if channel_order not in ("rgb", "bgr"):
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    if not isinstance(image, np.ndarray):
        raise ValueError(f"image must be a numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.dtype not in _ACCEPTED_DTYPES:
        raise ValueError(f"image dtype must be uint8, float32 or float64, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {image.shape}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ValueError(f"image is too small to hold a face: {image.shape[1]}x{image.shape[0]} pixels")
    if image.dtype != np.uint8:
        if not np.isfinite(image).all():
            raise ValueError("image contains NaN or infinite values")
        lo, hi = float(image.min()), float(image.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"float image values must lie in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
        image = np.round(image * 255.0).astype(np.uint8)
    if image.ndim == 2:
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if channel_order == "bgr":
        # OpenCV swaps the channels in one pass (0.05 ms for 640x480); numpy's copy of a reversed
        # channel view took 2 ms, a sixth of the tracker's time per frame. Same pixels.
        import cv2

        code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    return np.ascontiguousarray(image[:, :, :3])


class LandmarkDetector:
    """MediaPipe Face Mesh returning 468 (or 478 with iris) landmarks in pixel units.

    ``x, y`` are pixels; ``z`` is MediaPipe's relative depth scaled by the image width (its
    documented scale), growing away from the camera.
    """

    def __init__(
        self, *, static_image_mode: bool = False, refine_landmarks: bool = False,
        min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
    ) -> None:
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static_image_mode,
            max_num_faces=1,
            refine_landmarks=refine_landmarks,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,  # unused by MediaPipe in static_image_mode
        )

    def detect(self, rgb: NDArray[np.uint8]) -> NDArray[np.float64] | None:
        """Landmarks (N, 3) in pixels for the most prominent face of an RGB uint8 image, or None."""
        result = self._mesh.process(rgb)
        if not result.multi_face_landmarks:
            return None
        h, w = rgb.shape[:2]
        lm = result.multi_face_landmarks[0].landmark
        pts = np.array([(p.x, p.y, p.z) for p in lm], dtype=np.float64)
        return pts * np.array([w, h, w], dtype=np.float64)

    def close(self) -> None:
        self._mesh.close()


def detect_landmarks(image: NDArray, channel_order: ChannelOrder = "rgb") -> NDArray[np.float64] | None:
    """One-shot landmark detection on a single image (static mode); None when no face is found."""
    det = LandmarkDetector(static_image_mode=True)
    try:
        return det.detect(validate_image(image, channel_order))
    finally:
        det.close()


@dataclass(frozen=True)
class FaceObservation:
    """One tracked frame: the 55-d expression, how much to trust it, and whether a face was seen."""

    expression: NDArray[np.float32]
    confidence: float
    face_present: bool
    landmarks: NDArray[np.float64] | None = field(default=None, repr=False, compare=False)


@dataclass
class FitResult:
    """Expression fit of one landmark set: weights, head rotation, residual and alignment."""

    weights: NDArray[np.float64]
    pitch: float
    yaw: float
    roll: float
    rms_residual_mm: float
    aligned: NDArray[np.float64]
    similarity: Similarity
    first_stage: NDArray[np.float64] | None = field(default=None, repr=False)  # bounded LS weights (52,)
    offset: NDArray[np.float64] | None = field(default=None, repr=False)  # aligned - neutral (V, 3)


class ExpressionFitter:
    """Landmarks (pixels) -> 55-d expression, with an optional per-person running neutral.

    Pure numpy/scipy (no MediaPipe), so it serves the tracker, the photo avatar (which factors
    out the photo's own expression with it) and tests on synthetic landmarks alike.

    ``basis="observed"`` fits the detector-space observation model of
    :mod:`face_expr_ros.rig.calibration` when it is available (the tracker's default; pass
    ``observation`` to use one other than the stored file) and applies its read-out;
    ``basis="model"`` fits the surface basis itself (exact for synthetic landmarks).
    """

    def __init__(
        self,
        model: FaceModel | None = None,
        *,
        adapt_neutral: bool = True,
        basis: Literal["observed", "model"] = "observed",
        observation: ObservationModel | None = None,
        ridge: float = 0.02,
        sparsity: float = 0.02,
        min_response_mm: float = 2.0,
        depth_weight: float = 0.3,
        neutral_rate: float = 0.03,
        floor_leak: float = 0.002,
        floor_rate: float = 0.05,
        floor_deadband: float = 0.08,
    ) -> None:
        self.model = model if model is not None else load_model()
        self.adapt_neutral = adapt_neutral
        self.neutral_rate = neutral_rate
        self.floor_leak = floor_leak
        self.floor_rate = floor_rate
        self.floor_deadband = floor_deadband
        m = self.model
        self.active = np.flatnonzero(np.abs(m.basis).reshape(N_BLENDSHAPES, -1).max(axis=1) > 0)
        fields, self.base_neutral = m.basis, m.neutral
        self.angle_map = np.vstack([np.eye(3), np.zeros((1, 3))])
        self.pose_fields: NDArray[np.float64] | None = None
        self.readout: NDArray[np.float64] | None = None
        self.readout_scale = 1.0
        if basis == "observed":
            obs = observation if observation is not None else load_observation_model()
            if obs is not None:
                fields, self.base_neutral = obs.basis, obs.neutral
                self.angle_map = obs.angle_map
                self.readout_scale = obs.readout_scale
                self.pose_fields = obs.pose_fields.reshape(len(obs.pose_fields), -1)
                # Channels the detector barely responds to (calibrated peak landmark motion below
                # min_response_mm) cannot be told from detector noise: they are reported as 0
                # rather than fitted, which would only spread noise over the others.
                response = np.linalg.norm(obs.basis, axis=2).max(axis=1)
                self.active = obs.channels[response[obs.channels] >= min_response_mm]
                expected = (3 * m.n_vertices + len(obs.channels) + 1, len(obs.channels))
                if obs.readout.shape == expected and np.array_equal(self.active, obs.channels):
                    self.readout = obs.readout
        elif basis != "model":
            raise ValueError(f"basis must be 'observed' or 'model', got {basis!r}")
        self.fields = fields
        self._w_xyz = np.array([1.0, 1.0, depth_weight])
        w_flat = np.tile(self._w_xyz, m.n_vertices)
        self._basis_flat = fields[self.active].reshape(len(self.active), -1)  # (K, 3V)
        bw = self._basis_flat.T * w_flat[:, None]
        g0 = bw.T @ bw
        # Per-channel ridge, relative to each channel's own response, so that weak channels
        # (eyelids: a few mm) are not shrunk by a penalty sized for strong ones (jaw: 20 mm).
        gram = g0 + ridge * np.diag(np.diag(g0))
        # With G = R^T R (Cholesky): |B w - d|^2 + w^T Lambda w = |R w - R^-T B^T d|^2 + const.
        self._chol = np.linalg.cholesky(gram).T
        self._proj = np.linalg.solve(self._chol.T, bw.T) * w_flat[None, :]  # acts on unweighted d
        # Projector onto span(B) in the weighted metric, for the neutral update.
        # Nonnegative lasso term sum_c mu_c w_c (mu_c relative to the channel's response): on
        # w >= 0 it equals a shift of the right-hand side, |R w - (r - R^-T mu / 2)|^2 + const.
        self._rhs_shift = 0.5 * np.linalg.solve(self._chol.T, sparsity * np.diag(g0))
        self._span_coef = np.linalg.solve(g0 + 1e-9 * np.eye(len(g0)), bw.T) * w_flat[None, :]
        self.reset()

    def reset(self) -> None:
        """Forget the person: the neutral returns to the model's."""
        self.neutral = self.base_neutral.copy()
        self.floor = np.zeros(len(self.active))
        self.frames = 0

    def align(self, landmarks_px: NDArray[np.floating]) -> Similarity:
        """Similarity mapping the current neutral (model frame) onto the landmarks (canonical pixels)."""
        pts = image_to_canonical(np.asarray(landmarks_px, dtype=np.float64)[: self.model.n_vertices])
        st = self.model.stable_vertices
        return umeyama(self.neutral[st], pts[st], self.model.stable_weights)

    def solve(self, delta: NDArray[np.float64]) -> NDArray[np.float64]:
        """Bounded ridge least squares for the active channel weights given a (468, 3) offset."""
        from scipy.optimize import lsq_linear

        rhs = self._proj @ delta.ravel() - self._rhs_shift
        res = lsq_linear(self._chol, rhs, bounds=(0.0, 1.0), method="bvls", tol=1e-8)
        return np.asarray(res.x)

    def fit(self, landmarks_px: NDArray[np.floating], *, update: bool | None = None) -> FitResult:
        """Fit one frame of landmarks; updates the running neutral when adapting (or ``update``)."""
        lm = np.asarray(landmarks_px, dtype=np.float64)
        if lm.ndim != 2 or lm.shape[0] < self.model.n_vertices or lm.shape[1] != 3 or not np.isfinite(lm).all():
            raise ValueError(f"expected finite landmarks of shape ({self.model.n_vertices}, 3), got {lm.shape}")
        sim = self.align(lm)
        aligned = sim.invert(image_to_canonical(lm[: self.model.n_vertices]))
        angles = np.append(pose_from_rotation(sim.rotation), 1.0) @ self.angle_map
        neutral = self.neutral
        if self.pose_fields is not None:
            neutral = neutral + (pose_terms(angles[0], angles[1]) @ self.pose_fields).reshape(-1, 3)
        delta = aligned - neutral
        w = self.solve(delta)
        recon = (w @ self._basis_flat).reshape(-1, 3)
        resid = delta - recon
        rms = float(np.sqrt(np.mean(np.sum((resid * self._w_xyz) ** 2, axis=1))))
        if update if update is not None else self.adapt_neutral:
            self._update_neutral(resid, w)
        first = np.zeros(N_BLENDSHAPES)
        first[self.active] = w
        full = first
        if self.readout is not None:
            full = np.zeros(N_BLENDSHAPES)
            full[self.active] = np.clip(self._readout_vector(delta, w) @ self.readout, 0.0, 1.0)
        return FitResult(full, float(angles[0]), float(angles[1]), float(angles[2]), rms, aligned, sim,
                         first, delta)

    def _readout_vector(self, delta: NDArray[np.float64], w: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.concatenate([delta.ravel(), self.readout_scale * w, [1.0]])

    def readout_features(self, fit: FitResult) -> NDArray[np.float64]:
        """Read-out regressors ``[x - n, s * w_fit, 1]`` of a fit (used to calibrate the read-out)."""
        if fit.first_stage is None or fit.offset is None:
            raise ValueError("fit carries no first-stage result")
        return self._readout_vector(fit.offset, fit.first_stage[self.active])

    def _update_neutral(self, resid: NDArray[np.float64], w: NDArray[np.float64]) -> None:
        self.frames += 1
        # Identity part: only the component of the residual the basis cannot express, so that
        # expressions (however often they are held) never leak into the neutral.
        flat = resid.ravel()
        perp = (flat - self._basis_flat.T @ (self._span_coef @ flat)).reshape(-1, 3)
        rate = max(self.neutral_rate, 1.0 / (self.frames + 1))  # fast at first: absorb a new identity
        norm = np.linalg.norm(perp, axis=1, keepdims=True)
        perp = perp * np.minimum(1.0, 2.0 / np.maximum(norm, 1e-9))  # Huber-like cap, 2 mm per vertex
        self.neutral = self.neutral + rate * perp
        # Basis part: a leaky minimum of each weight (rises slowly, drops at once). A channel
        # that never reads below f means the neutral itself carries f of it.
        self.floor = np.minimum(w, self.floor + self.floor_leak)
        if self.frames > 10:
            # Only the part of the floor above a dead band moves the neutral: the leaky minimum of
            # a channel that is never exactly 0 (noise, or an ever-moving jaw) settles near
            # sqrt(leak * range), and shifting by that on every frame would let the neutral
            # drift along the channel without bound.
            shift = self.floor_rate * np.maximum(self.floor - self.floor_deadband, 0.0)
            self.neutral = self.neutral + (shift @ self._basis_flat).reshape(-1, 3)
            self.floor = self.floor - shift
        # Keep the neutral in the reference frame: remove rigid drift the updates introduced.
        st = self.model.stable_vertices
        back = umeyama(self.neutral[st], self.base_neutral[st], self.model.stable_weights)
        self.neutral = back.apply(self.neutral)

    def expression(self, fit: FitResult) -> NDArray[np.float32]:
        """The 55-d frame of a fit (clamped to the valid ranges)."""
        out = np.zeros(DIM, dtype=np.float64)
        out[:N_BLENDSHAPES] = fit.weights
        out[index("headPitch")] = fit.pitch
        out[index("headYaw")] = fit.yaw
        out[index("headRoll")] = fit.roll
        return clamp(out)


class FaceTracker:
    """Image -> :class:`FaceObservation`, using MediaPipe Face Mesh and :class:`ExpressionFitter`.

    ``channel_order`` says how 3- and 4-channel images are ordered ("rgb" or "bgr", as
    OpenCV delivers). ``static_image_mode`` runs the face detector on every image (for
    unrelated photos); the default tracks from frame to frame (video). ``adapt_neutral``
    learns the person's resting face online; switch it off for the stateless mode.
    """

    def __init__(
        self,
        *,
        channel_order: ChannelOrder = "rgb",
        static_image_mode: bool = True,
        adapt_neutral: bool = True,
        refine_landmarks: bool = True,
        model: FaceModel | None = None,
        residual_scale_mm: float = 2.5,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
        self.channel_order: ChannelOrder = channel_order
        self.fitter = ExpressionFitter(model, adapt_neutral=adapt_neutral)
        self.detector = LandmarkDetector(static_image_mode=static_image_mode, refine_landmarks=refine_landmarks,
                                         min_detection_confidence=min_detection_confidence,
                                         min_tracking_confidence=min_tracking_confidence)
        self.residual_scale_mm = residual_scale_mm

    def process(self, image: NDArray) -> FaceObservation:
        """Track one frame. Raises ValueError for unusable input; returns face_present=False for no face."""
        rgb = validate_image(image, self.channel_order)
        lm = self.detector.detect(rgb)
        if lm is None:
            return FaceObservation(NEUTRAL.copy(), 0.0, False, None)
        fit = self.fitter.fit(lm)
        # Confidence: how well the linear model explains the landmarks (1 = perfectly).
        conf = float(np.exp(-((fit.rms_residual_mm / self.residual_scale_mm) ** 2)))
        return FaceObservation(self.fitter.expression(fit), conf, True, lm)

    def analyze(self, image: NDArray) -> FaceObservation:
        """Stateless: fit one image against the model's neutral without touching the running neutral."""
        saved = (self.fitter.neutral, self.fitter.floor, self.fitter.frames)
        self.fitter.reset()
        try:
            rgb = validate_image(image, self.channel_order)
            lm = self.detector.detect(rgb)
            if lm is None:
                return FaceObservation(NEUTRAL.copy(), 0.0, False, None)
            fit = self.fitter.fit(lm, update=False)
            conf = float(np.exp(-((fit.rms_residual_mm / self.residual_scale_mm) ** 2)))
            return FaceObservation(self.fitter.expression(fit), conf, True, lm)
        finally:
            self.fitter.neutral, self.fitter.floor, self.fitter.frames = saved

    def reset(self) -> None:
        self.fitter.reset()

    def close(self) -> None:
        self.detector.close()

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
