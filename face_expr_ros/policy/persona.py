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

The persona of a listener is a point in a small space fitted on the training conversations:

1. the mean and the standard deviation of every channel over the conversation
   (``track_statistics``), standardised over the training conversations;
2. minus what the *speaker's* statistics of the same conversation predict of them (ridge
   regression fitted on the training conversations): a listener smiles more with a cheerful
   speaker, and that smile belongs to the conversation, not to the person;
3. projected on the first ``dim`` principal components of those residuals, whitened. So every
   component has unit variance over the training listeners and the origin is the average listener.

Step 2 matters because the persona is carried from one conversation to another. Measured on the
synthetic training split (283 conversations), the speaker's statistics predict 46-58 % of the
variance of persona components 2-4 when the raw statistics are used (held-out ridge regression,
``benchmarks/bench_persona_speaker.py``); a persona drawn from the bank then brought its own
speaker's affect into a new conversation, where the network, which also reads the current
speaker, counted it twice: the spread of the smile across conversations came out 1.6 times the
recorded listeners'. Removing the speaker's share is
the "regress out the nuisance factor" of speaker normalisation (for example within-class
covariance normalisation of speaker embeddings, Hatch et al., Interspeech 2006), applied with the
speaker as the nuisance.

The space keeps the personas of all its training listeners (``bank``): drawing one of them
reproduces the mix of people in the data, as imitation should.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import expression as ex

PERSONA_CHOICES = ("sample", "mean")  # or the index of a bank entry
# A drawn persona is spread * (its listener's persona); the origin is the average listener. 0.75 keeps
# FD at its minimum on the validation split while the data's poor listeners, the outliers of the
# space, are played less extreme (docs/policy.md, "Persona spread").
DEFAULT_PERSONA_SPREAD = 0.75
SPEAKER_RIDGE = 0.5  # see PersonaSpace.fit
_ARRAYS = ("center", "scale", "speaker_center", "speaker_scale", "speaker_map", "components", "bank")


class PersonaError(ValueError):
    """A persona file or a persona choice that cannot be used; the text names the file or field."""


def parse_choice(text: str) -> str | int:
    """A persona choice as written in a parameter file or on a command line: a number is a bank index."""
    text = text.strip()
    return int(text) if text.isdigit() else text


def track_statistics(track: NDArray[np.floating], role: str = "listener") -> NDArray[np.float64]:
    """(T, 55) expression track -> (110,): per-channel mean, then per-channel standard deviation."""
    frames = np.asarray(track, np.float64)
    if frames.ndim != 2 or frames.shape[1] != ex.DIM or len(frames) < 2:
        raise PersonaError(f"{role} track has shape {frames.shape}, expected (frames >= 2, {ex.DIM})")
    if not np.isfinite(frames).all():
        raise PersonaError(f"{role} track contains NaN or inf")
    return np.concatenate([frames.mean(0), frames.std(0)])


def standardiser(stats: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Center and spread of statistics over conversations (floored: constant channels add nothing)."""
    return stats.mean(0), np.maximum(stats.std(0), 1e-6)


def ridge_map(x: NDArray[np.float64], y: NDArray[np.float64], ridge: float) -> NDArray[np.float64]:
    """(F, G) least-squares map from centred ``x`` (N, F) to centred ``y`` (N, G) with the L2 penalty
    ``ridge * N`` (ridge regression, Hoerl & Kennard 1970)."""
    return np.linalg.solve(x.T @ x + ridge * len(x) * np.eye(x.shape[1]), x.T @ y)


@dataclass(frozen=True)
class PersonaSpace:
    """Standardisation, the speaker's share, whitened principal components, and the training bank."""

    center: NDArray[np.float64]  # (F,) mean listener statistics over the training conversations
    scale: NDArray[np.float64]  # (F,) their spread
    speaker_center: NDArray[np.float64]  # (F,) the same for the speakers
    speaker_scale: NDArray[np.float64]  # (F,)
    speaker_map: NDArray[np.float64]  # (F, F) standardised speaker -> predicted standardised listener
    components: NDArray[np.float64]  # (dim, F) whitening projection; zero rows past the data's rank
    bank: NDArray[np.float32]  # (N, dim) personas of the training listeners

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, listeners: Sequence[NDArray[np.floating]], speakers: Sequence[NDArray[np.floating]], dim: int,
            ridge: float = SPEAKER_RIDGE) -> PersonaSpace:
        """Fit on the training conversations: one listener track and its speaker's track each.

        ``ridge`` is the L2 penalty of the speaker regression per conversation (lambda = ridge * N on
        standardised statistics); 0.5 was the best of 1/283 .. 1000/283 in 5-fold cross-validation
        on the synthetic training split (held-out R^2 0.23 of all listener statistics).
        """
        if dim < 1:
            raise PersonaError(f"persona dim must be >= 1, got {dim}")
        if not listeners:
            raise PersonaError("no listener tracks to fit a persona space on")
        if len(speakers) != len(listeners):
            raise PersonaError(f"{len(listeners)} listener tracks but {len(speakers)} speaker tracks")
        if ridge <= 0:
            raise PersonaError(f"speaker ridge must be > 0, got {ridge}")
        listener_stats = np.stack([track_statistics(t) for t in listeners])
        speaker_stats = np.stack([track_statistics(t, "speaker") for t in speakers])
        center, scale = standardiser(listener_stats)
        speaker_center, speaker_scale = standardiser(speaker_stats)
        z_listener = (listener_stats - center) / scale
        z_speaker = (speaker_stats - speaker_center) / speaker_scale
        n, f = z_speaker.shape
        speaker_map = ridge_map(z_speaker, z_listener, ridge)
        residual = z_listener - z_speaker @ speaker_map
        _, singular, vt = np.linalg.svd(residual, full_matrices=False)  # centred: both sides are
        spread = singular / np.sqrt(max(n - 1, 1))
        keep = int(min(dim, np.sum(spread > 1e-6)))
        components = np.zeros((dim, f))
        components[:keep] = vt[:keep] / spread[:keep, None]
        return cls(center, scale, speaker_center, speaker_scale, speaker_map, components,
                   (residual @ components.T).astype(np.float32))

    @classmethod
    def neutral(cls, dim: int) -> PersonaSpace:
        """A space that knows only the average listener (models made without data, tests)."""
        n = 2 * ex.DIM
        return cls(np.zeros(n), np.ones(n), np.zeros(n), np.ones(n), np.zeros((n, n)), np.zeros((dim, n)),
                   np.zeros((1, dim), np.float32))

    def embed_statistics(self, listener_stats: NDArray[np.floating],
                         speaker_stats: NDArray[np.floating]) -> NDArray[np.float32]:
        z_listener = (np.asarray(listener_stats, np.float64) - self.center) / self.scale
        z_speaker = (np.asarray(speaker_stats, np.float64) - self.speaker_center) / self.speaker_scale
        return ((z_listener - z_speaker @ self.speaker_map) @ self.components.T).astype(np.float32)

    def embed(self, listener: NDArray[np.floating], speaker: NDArray[np.floating]) -> NDArray[np.float32]:
        """The persona of one recorded listener (T, 55), heard with ``speaker`` (T', 55): to imitate them."""
        return self.embed_statistics(track_statistics(listener), track_statistics(speaker, "speaker"))

    def choose(self, choice: str | int, rng: np.random.Generator | None = None,
               spread: float = 1.0) -> NDArray[np.float32]:
        """``"sample"``: a training listener drawn from ``rng``, moved toward the average listener by
        ``spread`` (1 is the listener as recorded, 0 the average; see ``DEFAULT_PERSONA_SPREAD``);
        ``"mean"``: the average listener; an integer: that entry of the bank, as recorded."""
        if isinstance(choice, (int, np.integer)) and not isinstance(choice, bool):
            if not 0 <= choice < len(self.bank):
                raise PersonaError(f"persona index {choice} out of range: the model knows {len(self.bank)} personas")
            return self.bank[int(choice)].copy()
        if choice == "mean":
            return np.zeros(self.dim, np.float32)
        if choice == "sample":
            if not 0.0 <= spread <= 2.0:
                raise PersonaError(f"persona spread must be in [0, 2], got {spread}")
            rng = rng if rng is not None else np.random.default_rng()
            return np.float32(spread) * self.bank[int(rng.integers(len(self.bank)))]
        raise PersonaError(f"persona must be one of {PERSONA_CHOICES} or a bank index, got {choice!r}")

    def save(self, path: str | Path) -> None:
        np.savez(path, **{name: getattr(self, name) for name in _ARRAYS})

    @classmethod
    def load(cls, path: str | Path) -> PersonaSpace:
        path = Path(path)
        try:
            with np.load(path) as npz:
                missing = [k for k in _ARRAYS if k not in npz.files]
                if missing:
                    raise PersonaError(f"{path}: missing array(s) {missing}")
                arrays = {k: npz[k] for k in _ARRAYS}
        except (OSError, ValueError) as err:
            if isinstance(err, PersonaError):
                raise
            raise PersonaError(f"{path}: not a readable persona file ({err})") from None
        n_stats = 2 * ex.DIM
        shapes_ok = (all(arrays[k].shape == (n_stats,) for k in ("center", "scale", "speaker_center", "speaker_scale"))
                     and arrays["speaker_map"].shape == (n_stats, n_stats)
                     and arrays["components"].ndim == 2 and arrays["components"].shape[1] == n_stats
                     and arrays["bank"].ndim == 2 and arrays["bank"].shape[1] == arrays["components"].shape[0]
                     and len(arrays["bank"]) >= 1)
        if not shapes_ok:
            raise PersonaError(f"{path}: arrays have inconsistent shapes "
                               f"{ {k: v.shape for k, v in arrays.items()} }")
        if (not all(np.isfinite(v).all() for v in arrays.values()) or (arrays["scale"] <= 0).any()
                or (arrays["speaker_scale"] <= 0).any()):
            raise PersonaError(f"{path}: contains NaN, inf or a non-positive scale")
        return cls(**{k: v.astype(np.float32 if k == "bank" else np.float64) for k, v in arrays.items()})
