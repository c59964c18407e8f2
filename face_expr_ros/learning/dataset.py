"""A PyTorch Dataset of fixed windows over dataset shards, as the policy sees them.

At a step whose last observed frame is ``tau``, the policy sees the speaker and the audio for
frames ``tau - W + 1 .. tau``, its own outputs for frames ``tau - W - D .. tau - 1 - D`` (``D`` =
``history_delay``; frames before the conversation are zeros), and must produce the listener's
frames ``tau .. tau + H - 1`` (an action chunk). Windows never cross conversations.

Why a delay: with its own last frame in view, the best next-frame guess on recorded data is "the
same again", and a network trained that way leans on the copy and under-uses the speaker; fed its
own outputs at run time it then stays where it started (the "copycat" failure of behaviour
cloning with action history; Wen et al., NeurIPS 2020). With the history ending ``D`` frames
back, the network still knows *who it has been* (how much it smiles, nods, blinks) but must read
what happens next from the speaker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from face_expr_ros import expression as ex
from face_expr_ros.learning.features import audio_frame_features, seconds_of_silence
from face_expr_ros.learning.shards import iter_conversations

PAUSE_EMPHASIS_S = 1.5  # how far into a pause a window counts as "at a pause" for pause_weights


@dataclass(frozen=True)
class WindowIndex:
    conversation: int
    tau: int


class WindowDataset(Dataset):
    """Fixed windows (W frames of context, H frames of target) over one split of a dataset."""

    def __init__(self, folder: str | Path, split: str, window: int = 32, horizon: int = 8,
                 stride: int = 4, history_delay: int = 0) -> None:
        if window < 1 or horizon < 1 or stride < 1 or history_delay < 0:
            raise ValueError(f"window, horizon and stride must be >= 1 and history_delay >= 0, got {window}, "
                             f"{horizon}, {stride}, {history_delay}")
        self.window, self.horizon, self.history_delay = window, horizon, history_delay
        self.conversations = [c for c in iter_conversations(folder, split)
                              if c.metadata.get("has_listener", True)]
        if not self.conversations:
            raise ValueError(f"{folder}: no conversations with a listener in split {split!r}")
        self._audio = [audio_frame_features(c) for c in self.conversations]
        self._silence = [seconds_of_silence(a) for a in self._audio]
        self.rollouts: list[np.ndarray] | None = None
        self.index = [
            WindowIndex(i, tau)
            for i, c in enumerate(self.conversations)
            for tau in range(window - 1, c.n_frames - horizon + 1, stride)
        ]

    def pause_weights(self, emphasis: float, within_s: float = PAUSE_EMPHASIS_S) -> np.ndarray:
        """Per-window sampling weight: ``1 + emphasis`` where the last observed frame is in the first
        ``within_s`` seconds of a pause (``0 < silence <= within_s``), 1 elsewhere.

        It depends on the inputs only, never on the target, so the conditional distribution the
        network learns is unchanged at its optimum; what changes is how much of training goes to
        the moments that carry backchannel timing (the listener's nod 0.1-1 s into a pause), about
        a tenth of all windows and a few hundredths of a nat of each one's loss.
        """
        if emphasis < 0:
            raise ValueError(f"pause emphasis must be >= 0, got {emphasis}")
        s = np.array([self._silence[w.conversation][w.tau] for w in self.index], np.float32)
        return 1.0 + emphasis * ((s > 0) & (s <= within_s)).astype(np.float64)

    def attach_rollouts(self, tracks: list[np.ndarray]) -> None:
        """Give every window a second history, ``rollout_past``: the same frames of the policy's
        own track over this conversation (``rollouts.py``), one (frames, 55) track per conversation."""
        if len(tracks) != len(self.conversations) or any(
                len(t) != c.n_frames for t, c in zip(tracks, self.conversations)):
            raise ValueError("need one rollout track per conversation, as long as the conversation")
        self.rollouts = tracks

    def _past(self, track: np.ndarray, tau: int) -> np.ndarray:
        past = np.zeros((self.window, ex.DIM), np.float32)
        end = tau - self.history_delay
        start = max(end - self.window, 0)
        if end > 0:
            past[self.window - (end - start):] = track[start:end]
        return past

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        i, tau = self.index[k].conversation, self.index[k].tau
        conv = self.conversations[i]
        a = conv.arrays
        lo = tau - self.window + 1
        listener = a["listener_expression"]
        item = {
            "speaker": torch.from_numpy(a["speaker_expression"][lo:tau + 1]),
            "face_present": torch.from_numpy(a["speaker_face_present"][lo:tau + 1].astype(np.float32)),
            "audio": torch.from_numpy(self._audio[i][lo:tau + 1]),
            "silence": torch.from_numpy(self._silence[i][lo:tau + 1]),
            "listener_past": torch.from_numpy(self._past(listener, tau)),
            "target": torch.from_numpy(listener[tau:tau + self.horizon]),
            "words_heard": torch.tensor(int(a["words_heard"][tau])),
            "conversation": torch.tensor(i),
        }
        if self.rollouts is not None:
            item["rollout_past"] = torch.from_numpy(self._past(self.rollouts[i], tau))
        return item
