"""Fit a policy's output calibration (``policy/calibration.py``) on the training split.

The policy plays every training conversation closed loop with the runtime's defaults (a persona
drawn per run at the spread it will be run at, the default temperatures), *uncalibrated*; the Gaussian of
all its frames and the Gaussian of the same conversations' recorded listeners give the affine map,
the eyelid closure of both the eyelids' quantile map. The
training split is the only honest choice: the evaluation refuses to score conversations the
calibration was fitted on, as it refuses the policy's training conversations.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from face_expr_ros import expression as ex
from face_expr_ros.learning.rollouts import open_playback
from face_expr_ros.learning.shards import read_manifest
from face_expr_ros.policy.calibration import (
    DEFAULT_MAX_GAIN,
    FACE_CHANNELS,
    CalibrationError,
    OutputCalibration,
)
from face_expr_ros.policy.persona import DEFAULT_PERSONA_SPREAD


def fit_calibration(model_dir: str | Path, data: str | Path, *, samples: int = 1, seed: int = 0,
                    max_gain: float = DEFAULT_MAX_GAIN, channels: Sequence[int] = FACE_CHANNELS,
                    persona_spread: float = DEFAULT_PERSONA_SPREAD, backend: str = "onnxruntime",
                    progress: bool = True) -> OutputCalibration:
    """Play the training split of ``data`` through the policy in ``model_dir`` ``samples`` times per
    conversation and fit the map from its frames' Gaussian to the recorded listeners' on ``channels``.

    ``persona_spread`` should be the one the policy will be run at: the spread of who is played is
    part of the spread the map corrects."""
    from tqdm import tqdm

    from face_expr_ros.eval.evaluate import int_seed, run_policy
    from face_expr_ros.eval.metrics import GaussianStats

    if samples < 1:
        raise CalibrationError(f"samples must be >= 1, got {samples}")
    policy, embedder, conversations = open_playback(model_dir, data, "train", backend, persona_spread=persona_spread)
    generated, recorded = GaussianStats(ex.DIM), GaussianStats(ex.DIM)
    lids = list(ex.EYELIDS)
    lids_generated: list[np.ndarray] = []
    lids_recorded: list[np.ndarray] = []
    for conv in tqdm(conversations, desc="calibration (train)", unit="conv", disable=not progress):
        rows = embedder.rows(conv)
        for k in range(samples):
            frames = run_policy(policy, conv, rows, int_seed(seed, conv.conversation_id, "calibrate", k),
                                policy.temperature)
            generated.update(frames)
            lids_generated.append(frames[:, lids].astype(np.float32))
        recorded.update(conv.arrays["listener_expression"])
        lids_recorded.append(conv.arrays["listener_expression"][:, lids].astype(np.float32))
    manifest = read_manifest(data)
    meta = {"data": str(data), "data_hash": manifest.data_hash(), "split": "train",
            "fitted_on": sorted(manifest.fingerprints("train")), "conversations": len(conversations),
            "samples": samples, "seed": seed, "frames": generated.n,
            "runtime": {"persona": policy.persona_choice, "persona_spread": policy.persona_spread,
                        "temperature": policy.temperature, "token_temperature": policy.token_temperature,
                        "eyelid_temperature": policy.eyelid_temperature, "gaze_temperature": policy.gaze_temperature,
                        "head_temperature": policy.head_temperature, "code_persistence": policy.code_persistence}}
    return OutputCalibration.fit(generated.mean, generated.cov, recorded.mean, recorded.cov, max_gain, channels, meta,
                                 eyelids_from=np.concatenate(lids_generated), eyelids_to=np.concatenate(lids_recorded))
