"""The listener persona: who the policy is being, held fixed for a whole conversation.

Recorded listeners differ from person to person (style, expressivity, how much they smile, nod
and look away), and each stays the same person for the whole conversation. A policy that sees a
second of context cannot tell from it which of these people it is imitating, so every plan
draws from the average over all of them: a face narrower than any mixture of real people (no
wide-moving listener ever appears) whose character drifts from plan to plan. The remedy is a
global conditioning vector, as the speaker embeddings of multi-speaker text-to-speech and its
Global Style Tokens (Wang et al., ICML 2018): in training, every window carries the persona of
its conversation's listener, computed from that listener's whole recorded track; at run time a
persona is drawn from those of the training listeners (or chosen) when a conversation starts,
and held.

The persona of a track is a point in a small space fitted on the training listeners: the mean
and the standard deviation of every channel over the conversation (``track_statistics``),
standardised over the training conversations and projected on their first ``dim`` principal
components, whitened. So every component has unit variance over the training listeners and the
origin is the average listener. The space keeps the personas of all its training listeners
(``bank``): drawing one of them reproduces the mix of people in the data, as imitation should.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import expression as ex

PERSONA_CHOICES = ("sample", "mean")  # or the index of a bank entry


class PersonaError(ValueError):
    """A persona file or a persona choice that cannot be used; the text names the file or field."""


def parse_choice(text: str) -> str | int:
    """A persona choice as written in a parameter file or on a command line: a number is a bank index."""
    text = text.strip()
    return int(text) if text.isdigit() else text


def track_statistics(listener: NDArray[np.floating]) -> NDArray[np.float64]:
    """(T, 55) listener track -> (110,): per-channel mean, then per-channel standard deviation."""
    track = np.asarray(listener, np.float64)
    if track.ndim != 2 or track.shape[1] != ex.DIM or len(track) < 2:
        raise PersonaError(f"listener track has shape {track.shape}, expected (frames >= 2, {ex.DIM})")
    if not np.isfinite(track).all():
        raise PersonaError("listener track contains NaN or inf")
    return np.concatenate([track.mean(0), track.std(0)])


@dataclass(frozen=True)
class PersonaSpace:
    """Standardisation + whitened principal components of track statistics, and the training bank."""

    center: NDArray[np.float64]  # (F,) mean statistics over the training listeners
    scale: NDArray[np.float64]  # (F,) their spread (floored: constant channels add nothing)
    components: NDArray[np.float64]  # (dim, F) whitening projection; zero rows past the data's rank
    bank: NDArray[np.float32]  # (N, dim) personas of the training listeners

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, tracks: Sequence[NDArray[np.floating]], dim: int) -> PersonaSpace:
        """Fit on the listener tracks of the training conversations (one track per listener)."""
        if dim < 1:
            raise PersonaError(f"persona dim must be >= 1, got {dim}")
        if not tracks:
            raise PersonaError("no listener tracks to fit a persona space on")
        stats = np.stack([track_statistics(t) for t in tracks])
        center = stats.mean(0)
        scale = np.maximum(stats.std(0), 1e-6)
        z = (stats - center) / scale
        _, singular, vt = np.linalg.svd(z, full_matrices=False)
        spread = singular / np.sqrt(max(len(stats) - 1, 1))
        keep = int(min(dim, np.sum(spread > 1e-6)))
        components = np.zeros((dim, stats.shape[1]))
        components[:keep] = vt[:keep] / spread[:keep, None]
        return cls(center, scale, components, (z @ components.T).astype(np.float32))

    @classmethod
    def neutral(cls, dim: int) -> PersonaSpace:
        """A space that knows only the average listener (models made without data, tests)."""
        n = 2 * ex.DIM
        return cls(np.zeros(n), np.ones(n), np.zeros((dim, n)), np.zeros((1, dim), np.float32))

    def embed_statistics(self, stats: NDArray[np.floating]) -> NDArray[np.float32]:
        return (((np.asarray(stats, np.float64) - self.center) / self.scale) @ self.components.T).astype(np.float32)

    def embed(self, listener: NDArray[np.floating]) -> NDArray[np.float32]:
        """The persona of one recorded listener track (T, 55): to imitate that person."""
        return self.embed_statistics(track_statistics(listener))

    def choose(self, choice: str | int, rng: np.random.Generator | None = None) -> NDArray[np.float32]:
        """``"sample"``: a training listener drawn from ``rng``; ``"mean"``: the average listener;
        an integer: that entry of the bank."""
        if isinstance(choice, (int, np.integer)) and not isinstance(choice, bool):
            if not 0 <= choice < len(self.bank):
                raise PersonaError(f"persona index {choice} out of range: the model knows {len(self.bank)} personas")
            return self.bank[int(choice)].copy()
        if choice == "mean":
            return np.zeros(self.dim, np.float32)
        if choice == "sample":
            rng = rng if rng is not None else np.random.default_rng()
            return self.bank[int(rng.integers(len(self.bank)))].copy()
        raise PersonaError(f"persona must be one of {PERSONA_CHOICES} or a bank index, got {choice!r}")

    def save(self, path: str | Path) -> None:
        np.savez(path, center=self.center, scale=self.scale, components=self.components, bank=self.bank)

    @classmethod
    def load(cls, path: str | Path) -> PersonaSpace:
        path = Path(path)
        names = ("center", "scale", "components", "bank")
        try:
            with np.load(path) as npz:
                missing = [k for k in names if k not in npz.files]
                if missing:
                    raise PersonaError(f"{path}: missing array(s) {missing}")
                arrays = {k: npz[k] for k in names}
        except (OSError, ValueError) as err:
            if isinstance(err, PersonaError):
                raise
            raise PersonaError(f"{path}: not a readable persona file ({err})") from None
        n_stats = 2 * ex.DIM
        shapes_ok = (arrays["center"].shape == (n_stats,) and arrays["scale"].shape == (n_stats,)
                     and arrays["components"].ndim == 2 and arrays["components"].shape[1] == n_stats
                     and arrays["bank"].ndim == 2 and arrays["bank"].shape[1] == arrays["components"].shape[0]
                     and len(arrays["bank"]) >= 1)
        if not shapes_ok:
            raise PersonaError(f"{path}: arrays have inconsistent shapes "
                               f"{ {k: v.shape for k, v in arrays.items()} }")
        if not all(np.isfinite(v).all() for v in arrays.values()) or (arrays["scale"] <= 0).any():
            raise PersonaError(f"{path}: contains NaN, inf or a non-positive scale")
        return cls(arrays["center"].astype(np.float64), arrays["scale"].astype(np.float64),
                   arrays["components"].astype(np.float64), arrays["bank"].astype(np.float32))
