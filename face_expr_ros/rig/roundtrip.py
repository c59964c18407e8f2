"""Round trip on real pixels: render the photo avatar with known weights, track it, compare.

Sampling (one independent random frame after another, the hardest case for the running
neutral, which must converge while no frame is neutral):

* the ten *scored* channels (:data:`SCORED`) are drawn uniformly in [0, 0.8]; jawOpen and
  both blinks on every frame, while antagonists (muscles that pull the same landmarks in
  opposite directions) take turns: on each side either mouthSmile or mouthFrown is drawn
  (the other is 0), and either browInnerUp or the pair browDownLeft/Right. Drawing
  antagonists together cancels their landmark motion (a corner pulled up 0.6 and down 0.6
  does not move), which no landmark tracker can undo; one expression-space rule, stated
  here, keeps the test about tracking rather than about a physically ambiguous input.
  ``co_active`` (default 0) is the fraction of frames where antagonists are drawn
  independently anyway (all ten scored channels uniform in [0, 0.8]): the harder variant;
* every other observable channel is a *distractor*: active with probability
  ``distractor_prob`` and then uniform in [0, ``distractor_max``]; their errors are
  reported, not scored;
* head pitch and yaw uniform in [-20, 20] deg, roll uniform in [-5, 5] deg.

The tracker runs with its per-person running neutral starting from the calibrated reference
neutral (``running``), or stateless against the reference alone (``stateless``); every
frame counts (no burn-in is discarded). The tracker's observation model is calibrated on
renders of the same photo drawn from this same distribution with another seed
(:mod:`face_expr_ros.rig.calibration`, seed 7): the benchmark measures generalisation to new
weight combinations and poses, not to new faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from face_expr_ros.expression import ARKIT_BLENDSHAPES, DIM, HEAD_POSE, index

SCORED: tuple[str, ...] = (
    "jawOpen",
    "mouthSmileLeft",
    "mouthSmileRight",
    "mouthFrownLeft",
    "mouthFrownRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
    "browInnerUp",
    "browDownLeft",
    "browDownRight",
)
MAE_LIMIT = 0.12
CORR_LIMIT = 0.8
HEAD_MAE_LIMIT_DEG = 4.0


@dataclass
class RoundTripResult:
    truth: NDArray[np.float32]  # (N, 55)
    tracked: NDArray[np.float32]  # (N, 55)
    face_present: NDArray[np.bool_]
    observed: list[str]

    def channel_stats(self, name: str) -> dict[str, float]:
        i = index(name)
        ok = self.face_present
        t, e = self.truth[ok, i].astype(np.float64), self.tracked[ok, i].astype(np.float64)
        scale = np.rad2deg(1.0) if name in HEAD_POSE else 1.0
        mae = float(np.mean(np.abs(t - e)) * scale)
        corr = float(np.corrcoef(t, e)[0, 1]) if t.std() > 1e-9 and e.std() > 1e-9 else float("nan")
        means = {"truth_mean": float(t.mean() * scale), "tracked_mean": float(e.mean() * scale)}
        return {"mae": mae, "corr": corr, **means}

    def table(self) -> dict[str, dict[str, float]]:
        names = [*SCORED, *(n for n in self.observed if n not in SCORED), "headPitch", "headYaw", "headRoll"]
        return {n: self.channel_stats(n) for n in names}

    def failures(self) -> list[str]:
        """Scored channels / head angles outside the acceptance limits."""
        bad = []
        for name in SCORED:
            s = self.channel_stats(name)
            if not (s["mae"] <= MAE_LIMIT and s["corr"] >= CORR_LIMIT):
                bad.append(f"{name}: MAE {s['mae']:.3f}, r {s['corr']:.3f}")
        for name in ("headPitch", "headYaw"):
            s = self.channel_stats(name)
            if not s["mae"] <= HEAD_MAE_LIMIT_DEG:
                bad.append(f"{name}: MAE {s['mae']:.2f} deg")
        if not self.face_present.all():
            bad.append(f"face lost on {int((~self.face_present).sum())} frames")
        return bad


def sample_frames(
    n: int,
    seed: int,
    observed: list[str],
    distractor_prob: float = 0.2,
    distractor_max: float = 0.4,
    head_deg: float = 20.0,
    co_active: float = 0.0,
) -> NDArray[np.float32]:
    """``n`` random 55-d frames (see the module docstring); a fraction ``co_active`` of them
    draws the antagonists independently too (all scored channels uniform in [0, 0.8])."""
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, DIM), dtype=np.float32)
    for name in SCORED:
        frames[:, index(name)] = rng.uniform(0.0, 0.8, n)
    # Drawn only when asked for, so that co_active=0 leaves the random stream as it always was.
    both = rng.random(n) < co_active if co_active > 0 else np.zeros(n, dtype=bool)
    for side in ("Left", "Right"):
        smile = rng.random(n) < 0.5
        frames[smile & ~both, index("mouthFrown" + side)] = 0.0
        frames[~smile & ~both, index("mouthSmile" + side)] = 0.0
    inner = rng.random(n) < 0.5
    frames[inner & ~both, index("browDownLeft")] = 0.0
    frames[inner & ~both, index("browDownRight")] = 0.0
    frames[~inner & ~both, index("browInnerUp")] = 0.0
    for name in observed:
        if name in SCORED:
            continue
        on = rng.random(n) < distractor_prob
        frames[:, index(name)] = np.where(on, rng.uniform(0.0, distractor_max, n), 0.0)
    frames[:, index("headPitch")] = np.deg2rad(rng.uniform(-head_deg, head_deg, n))
    frames[:, index("headYaw")] = np.deg2rad(rng.uniform(-head_deg, head_deg, n))
    frames[:, index("headRoll")] = np.deg2rad(rng.uniform(-head_deg / 4, head_deg / 4, n))
    return frames


MODES: dict[str, dict] = {"running": {"adapt_neutral": True}, "stateless": {"adapt_neutral": False}}


def run_round_trip_modes(
    n_frames: int = 300,
    seed: int = 2024,
    *,
    modes: tuple[str, ...] = ("running", "stateless"),
    distractor_prob: float = 0.2,
    distractor_max: float = 0.4,
    head_deg: float = 20.0,
    co_active: float = 0.0,
    progress: bool = False,
    tracker_options: dict | None = None,
) -> dict[str, RoundTripResult]:
    """Render ``n_frames`` random frames with the photo avatar once and track them in each mode.

    ``running``: the default tracker (per-person running neutral, starting from the
    reference); ``stateless``: every frame fitted against the reference neutral alone.
    """
    from face_expr_ros.perception.face_tracker import FaceTracker
    from face_expr_ros.rig.model import load_model
    from face_expr_ros.rig.render import PhotoRenderer

    model = load_model()
    observed = [n for n in model.observed_channels() if n in ARKIT_BLENDSHAPES]
    frames = sample_frames(n_frames, seed, observed, distractor_prob, distractor_max, head_deg, co_active)
    renderer = PhotoRenderer(model=model)
    trackers = {m: FaceTracker(channel_order="rgb", model=model, **{**MODES[m], **(tracker_options or {})})
                for m in modes}
    tracked = {m: np.zeros_like(frames) for m in modes}
    present = {m: np.zeros(n_frames, dtype=bool) for m in modes}
    it = range(n_frames)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="round trip", unit="frame")
    try:
        for k in it:
            img = renderer.render(frames[k])
            for m, tracker in trackers.items():
                obs = tracker.process(img)
                tracked[m][k] = obs.expression
                present[m][k] = obs.face_present
    finally:
        for tracker in trackers.values():
            tracker.close()
    return {m: RoundTripResult(frames, tracked[m], present[m], observed) for m in modes}


def run_round_trip(
    n_frames: int = 300,
    seed: int = 2024,
    *,
    distractor_prob: float = 0.2,
    distractor_max: float = 0.4,
    head_deg: float = 20.0,
    progress: bool = False,
    tracker_options: dict | None = None,
) -> RoundTripResult:
    """Render ``n_frames`` random frames with the photo avatar and track them (running neutral on
    unless ``tracker_options`` says otherwise)."""
    return run_round_trip_modes(
        n_frames, seed, modes=("running",), distractor_prob=distractor_prob, distractor_max=distractor_max,
        head_deg=head_deg, progress=progress, tracker_options=tracker_options,
    )["running"]
