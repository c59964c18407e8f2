"""A PyTorch Dataset of fixed windows over dataset shards, as the policy sees them.

At a step whose last observed frame is ``tau``, the policy sees the speaker and the audio for
frames ``tau - W + 1 .. tau``, its own outputs for frames ``tau - W .. tau - 1`` (the first
frame of a conversation has no past: zeros), and must produce the listener's frames
``tau .. tau + H - 1`` (an action chunk). Windows never cross conversations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset

from face_expr_ros import expression as ex
from face_expr_ros.learning.shards import Conversation, iter_conversations

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


@dataclass(frozen=True)
class WindowIndex:
    conversation: int
    tau: int


class WindowDataset(Dataset):
    """Fixed windows (W frames of context, H frames of target) over one split of a dataset."""

    def __init__(self, folder: str | Path, split: str, window: int = 32, horizon: int = 8,
                 stride: int = 4) -> None:
        if window < 1 or horizon < 1 or stride < 1:
            raise ValueError(f"window, horizon and stride must be >= 1, got {window}, {horizon}, {stride}")
        self.window, self.horizon = window, horizon
        self.conversations = [c for c in iter_conversations(folder, split)
                              if c.metadata.get("has_listener", True)]
        if not self.conversations:
            raise ValueError(f"{folder}: no conversations with a listener in split {split!r}")
        self._audio = [audio_frame_features(c) for c in self.conversations]
        self._since_word = [seconds_since_last_word(c) for c in self.conversations]
        self.index = [
            WindowIndex(i, tau)
            for i, c in enumerate(self.conversations)
            for tau in range(window - 1, c.n_frames - horizon + 1, stride)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i, tau = self.index[k].conversation, self.index[k].tau
        conv = self.conversations[i]
        a = conv.arrays
        lo = tau - self.window + 1
        listener = a["listener_expression"]
        past = np.zeros((self.window, ex.DIM), np.float32)
        start = max(lo - 1, 0)
        past[self.window - (tau - start):] = listener[start:tau]
        return {
            "speaker": torch.from_numpy(a["speaker_expression"][lo:tau + 1]),
            "face_present": torch.from_numpy(a["speaker_face_present"][lo:tau + 1].astype(np.float32)),
            "audio": torch.from_numpy(self._audio[i][lo:tau + 1]),
            "since_word": torch.from_numpy(self._since_word[i][lo:tau + 1]),
            "listener_past": torch.from_numpy(past),
            "target": torch.from_numpy(listener[tau:tau + self.horizon]),
            "words_heard": torch.tensor(int(a["words_heard"][tau])),
            "conversation": torch.tensor(i),
        }
