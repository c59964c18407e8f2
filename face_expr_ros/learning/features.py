"""Per-frame network inputs computed from a conversation's arrays: the audio feature layout and
the silence clock. Torch-free, so the live nodes and the runtime can share the one
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


VAD_INDEX = -1  # the VAD flag is the last value of the network_audio_features layout
MAX_SILENCE_S = 30.0  # the silence clock's cap, also its value before the speaker's voice was ever heard


def voiced(audio: NDArray[np.floating]) -> NDArray[np.bool_]:
    """Which frames (..., F) of :func:`network_audio_features` are speech, by their VAD flag."""
    return np.asarray(audio)[..., VAD_INDEX] > 0.5


def seconds_of_silence(audio: NDArray[np.floating], fps: float = ex.FPS) -> NDArray[np.float32]:
    """Per frame of network audio features (T, F), seconds since the speaker's voice was last heard.

    0 in frames the VAD marks as speech, then growing through a pause, capped at ``MAX_SILENCE_S``
    (which is also the value before the first voiced frame). This is the policy's pause timing:
    listeners nod a few hundred ms into a pause (Ward & Tsukahara 2000). It is the VAD's clock, not
    the transcript's, because a live recogniser reports a word's end only after a latency, while the
    VAD flag arrives with the audio frame; training, evaluation and the live node all use this one
    definition (streamed by :class:`SilenceClock`).
    """
    speech = voiced(audio)
    frames = np.arange(len(speech))
    last = np.maximum.accumulate(np.where(speech, frames, -(10**9)))
    return np.minimum((frames - last) / fps, MAX_SILENCE_S).astype(np.float32)


class SilenceClock:
    """:func:`seconds_of_silence` one frame at a time (the streaming runtime); the same numbers."""

    def __init__(self, fps: float = ex.FPS) -> None:
        self.fps = fps
        self.reset()

    def reset(self) -> None:
        self._frames: int | None = None  # frames since the last voiced one; None: never voiced

    def update(self, voiced: bool) -> float:
        if voiced:
            self._frames = 0
        elif self._frames is not None:
            self._frames += 1
        if self._frames is None:
            return MAX_SILENCE_S
        return float(np.float32(min(self._frames / self.fps, MAX_SILENCE_S)))
