"""Per-frame network inputs computed from a conversation's arrays: the audio feature layout and
the time since the last word. Torch-free, so the live nodes and the runtime can share the one
definition with training (``learning/dataset.py``) without importing PyTorch.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import expression as ex
from face_expr_ros.learning.shards import Conversation

PITCH_SCALE_HZ = 300.0  # pitch is fed to the network as F0 / 300 Hz, so that it is near [0, 1]
ENERGY_OFFSET_DB, ENERGY_SCALE_DB = 60.0, 30.0


def audio_feature_names(n_mels: int) -> list[str]:
    """Names of the values of :func:`network_audio_features`, in order (for stamped messages)."""
    return [f"logmel_{k:02d}" for k in range(n_mels)] + ["energy", "pitch", "voiced", "vad"]


def network_audio_features(log_mel: NDArray[np.floating], energy_db: NDArray[np.floating],
                           pitch_hz: NDArray[np.floating], voiced: NDArray[np.floating],
                           vad: NDArray[np.generic]) -> NDArray[np.float32]:
    """(T, n_mels + 4) network audio input: log-mel, scaled energy and pitch, voicing, VAD.

    The one definition of the layout, used for training windows and by the live speech node.
    """
    extra = np.stack([
        (np.asarray(energy_db, np.float32) + ENERGY_OFFSET_DB) / ENERGY_SCALE_DB,
        np.asarray(pitch_hz, np.float32) / PITCH_SCALE_HZ,
        np.asarray(voiced, np.float32),
        np.asarray(vad).astype(np.float32),
    ], axis=-1)
    return np.concatenate([np.asarray(log_mel, np.float32), extra], axis=-1).astype(np.float32)


def audio_frame_features(conv: Conversation) -> NDArray[np.float32]:
    """Network audio input for every frame of a conversation (see :func:`network_audio_features`)."""
    a = conv.arrays
    return network_audio_features(a["audio_logmel"], a["audio_energy"], a["audio_pitch"], a["audio_voiced"],
                                  a["audio_vad"])


def seconds_since_last_word(conv: Conversation, fps: float = ex.FPS) -> NDArray[np.float32]:
    """Per frame, time since the last word ended (a large value before the first word)."""
    ends = np.array([end for _, _, end in conv.words] or [-1e3], dtype=np.float64)
    times = np.arange(conv.n_frames) / fps
    idx = np.searchsorted(ends, times, side="right") - 1
    last = np.where(idx >= 0, ends[np.maximum(idx, 0)], -1e3)
    return np.minimum(times - last, 30.0).astype(np.float32)
