"""Baseline listeners: each produces a (T, 55) track for one test conversation.

* :class:`RandomFromTrain`: a random stretch of a real training listener, unrelated to the
  speaker (the "random" baseline of Learning to Listen, Ng et al. 2022). Shows what realistic
  but non-responsive motion scores.
* :class:`NearestNeighbour`: retrieval on the speaker's context. Every ``chunk`` frames the
  context of the last second (speaker expression and audio features) is compared with the
  contexts of every ``stride``-th frame of the training conversations, and the training
  listener's next frames after the nearest context are played (the "NN" baseline of Learning
  to Listen, here chunked and cross-faded). Causal: it sees what the policy sees.
* :class:`Mirror`: the speaker's own expression, mirrored left/right (a partner facing you
  mimics your right smile with their left), delayed, scaled, with speech articulation removed
  and head motion damped. Mimicry is a large part of listening behaviour (Chartrand & Bargh 1999).
* :class:`RuleStyle`: the rule-based listener of one style from :mod:`face_expr_ros.sim.listeners`,
  regenerated for the conversation's timeline (synthetic conversations only: real recordings
  have no timeline and this baseline is not available for them). ``rule-mix`` draws the style
  from the data's own style mix for every track: it is the generator that made the recorded
  listeners, resampled for the same speaker, i.e. a perfect imitation of the data. Its FD and
  P-FD are the floor that sampling noise sets on any policy trained by imitation, and its rater
  score the ceiling of imitation.

Every baseline is deterministic in ``(conversation, seed)``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import expression as ex
from face_expr_ros.learning.features import audio_frame_features
from face_expr_ros.learning.shards import Conversation
from face_expr_ros.sim.listeners import STYLES, ListenerParams, listener_track, sample_listener, sample_params
from face_expr_ros.sim.speech import Timeline

F32 = NDArray[np.float32]

# Mouth channels that move because the speaker talks: a listener copying them would "speak".
SPEECH_CHANNELS: tuple[str, ...] = (
    "jawOpen", "jawForward", "jawLeft", "jawRight", "mouthClose", "mouthFunnel", "mouthPucker",
    "mouthLeft", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "mouthStretchLeft", "mouthStretchRight", "tongueOut",
)


def stable_seed(*parts: int | str) -> list[int]:
    """A seed sequence from ints and strings that is the same in every process (unlike ``hash``)."""
    return [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]


def timeline_of(conv: Conversation) -> Timeline | None:
    """The speaker's timeline stored with a synthetic conversation, or None (real recordings)."""
    data = conv.metadata.get("timeline")
    return Timeline.from_dict(data) if data else None


def fit_length(track: NDArray[np.floating], n: int) -> F32:
    """Trim, or pad by repeating the last frame (neutral if empty), to ``n`` frames."""
    x = np.asarray(track, np.float32)
    if len(x) >= n:
        return x[:n].copy()
    last = x[-1:] if len(x) else ex.NEUTRAL[None]
    return np.concatenate([x, np.repeat(last, n - len(x), axis=0)]).astype(np.float32)


def speaker_held(conv: Conversation) -> F32:
    """Speaker frames with the last seen face held through frames where it is absent (neutral before any)."""
    s = conv.arrays["speaker_expression"].astype(np.float32)
    present = conv.arrays["speaker_face_present"].astype(bool)
    if present.all():
        return s
    idx = np.where(present, np.arange(len(s)), -1)
    idx = np.maximum.accumulate(idx)
    return np.where((idx >= 0)[:, None], s[np.maximum(idx, 0)], ex.NEUTRAL[None]).astype(np.float32)


class Baseline:
    """A listener that generates a (T, 55) track for a conversation."""

    name: str = "baseline"
    deterministic: bool = True

    def available(self, conv: Conversation) -> bool:
        return True

    def generate(self, conv: Conversation, seed: int = 0) -> F32:
        raise NotImplementedError


@dataclass
class RandomFromTrain(Baseline):
    """A random stretch of a training listener, wrapping to further random stretches if too short."""

    listeners: Sequence[F32]
    name: str = "random-train"
    deterministic: bool = False

    def __post_init__(self) -> None:
        self.listeners = [np.asarray(x, np.float32) for x in self.listeners if len(x) > 0]
        if not self.listeners:
            raise ValueError("RandomFromTrain needs at least one non-empty training listener track")

    def generate(self, conv: Conversation, seed: int = 0) -> F32:
        rng = np.random.default_rng(stable_seed(seed, conv.conversation_id, self.name))
        n = conv.n_frames
        parts: list[F32] = []
        have = 0
        while have < n:
            src = self.listeners[int(rng.integers(len(self.listeners)))]
            take = min(n - have, len(src))
            start = int(rng.integers(len(src) - take + 1))
            parts.append(src[start:start + take])
            have += take
        return np.concatenate(parts).astype(np.float32)


def context_features(speaker: NDArray[np.floating], audio: NDArray[np.floating], window: int,
                     recent: int = 5) -> F32:
    """(T, 2 * 55 + 2 * A) context of each frame t over frames ``t - window + 1 .. t``:

    mean speaker expression over the window, the speaker frame at t, mean audio features over
    the window and over the last ``recent`` frames. Frames before the start are the first frame
    repeated (windows are causal and never cross conversations).
    """
    def trailing_mean(x: NDArray[np.floating], w: int) -> NDArray[np.float64]:
        x = np.asarray(x, np.float64)
        padded = np.concatenate([np.repeat(x[:1], w, axis=0), x])
        c = np.cumsum(padded, axis=0)
        return (c[w:] - c[:-w]) / w

    s = np.asarray(speaker, np.float64)
    return np.concatenate([trailing_mean(s, window), s, trailing_mean(audio, window),
                           trailing_mean(audio, recent)], axis=1).astype(np.float32)


@dataclass
class NearestNeighbour(Baseline):
    """Chunked nearest-neighbour retrieval on the speaker context (module docstring).

    ``keys`` (N, F) are standardised training contexts at frames ``positions`` of training
    conversation ``owners``; a chunk of ``chunk + crossfade`` listener frames starting at the
    nearest key's frame is played, and consecutive chunks are cross-faded linearly over
    ``crossfade`` frames so that retrieval seams do not jump.
    """

    keys: F32
    owners: NDArray[np.int64]
    positions: NDArray[np.int64]
    listeners: list[F32]
    mean: F32
    scale: F32
    window: int = 30
    chunk: int = 15
    crossfade: int = 5
    name: str = "nn-retrieval"
    deterministic: bool = True
    _key_sq: NDArray[np.float32] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._key_sq = (self.keys.astype(np.float32) ** 2).sum(axis=1)

    @classmethod
    def fit(cls, conversations: Iterable[Conversation], window: int = 30, chunk: int = 15, crossfade: int = 5,
            stride: int = 10) -> NearestNeighbour:
        """Index every ``stride``-th frame of the training conversations that have a listener."""
        feats, owners, positions, listeners = [], [], [], []
        need = chunk + crossfade
        for conv in conversations:
            if not conv.metadata.get("has_listener", True) or conv.n_frames < need:
                continue
            f = context_features(speaker_held(conv), audio_frame_features(conv), window)
            pos = np.arange(0, conv.n_frames - need + 1, stride)
            feats.append(f[pos])
            owners.append(np.full(len(pos), len(listeners)))
            positions.append(pos)
            listeners.append(np.asarray(conv.arrays["listener_expression"], np.float32))
        if not listeners:
            raise ValueError(f"NearestNeighbour needs training conversations with a listener of >= {need} frames")
        keys = np.concatenate(feats)
        mean = keys.mean(axis=0)
        # A feature that never varies in training carries no information: weight 0, not 1/eps.
        sd = keys.std(axis=0)
        scale = np.where(sd > 1e-6, 1.0 / np.maximum(sd, 1e-6), 0.0).astype(np.float32)
        return cls(((keys - mean) * scale).astype(np.float32), np.concatenate(owners), np.concatenate(positions),
                   listeners, mean.astype(np.float32), scale, window, chunk, crossfade)

    def nearest(self, queries: F32) -> NDArray[np.int64]:
        """Index of the nearest key (Euclidean, standardised features) for each query row."""
        q = ((np.asarray(queries, np.float32) - self.mean) * self.scale).astype(np.float32)
        # ||q - k||^2 = ||k||^2 - 2 q.k + const(q): one matrix product, in blocks to bound memory.
        out = np.empty(len(q), np.int64)
        for lo in range(0, len(q), 256):
            d = self._key_sq[None, :] - 2.0 * q[lo:lo + 256] @ self.keys.T
            out[lo:lo + 256] = np.argmin(d, axis=1)
        return out

    def generate(self, conv: Conversation, seed: int = 0) -> F32:
        n = conv.n_frames
        f = context_features(speaker_held(conv), audio_frame_features(conv), self.window)
        if f.shape[1] != self.keys.shape[1]:
            raise ValueError(f"{conv.conversation_id}: context has {f.shape[1]} features, the index "
                             f"{self.keys.shape[1]} (different audio features?)")
        starts = np.arange(0, n, self.chunk)
        hits = self.nearest(f[starts])
        length = self.chunk + self.crossfade
        out = np.zeros((n + length, ex.DIM), np.float64)
        weight = np.zeros(n + length)
        ramp = np.ones(length)
        ramp[:self.crossfade] = np.arange(1, self.crossfade + 1) / (self.crossfade + 1)
        ramp[self.chunk:] = ramp[:self.crossfade][::-1]
        for t, h in zip(starts, hits):
            p = int(self.positions[h])
            seg = self.listeners[int(self.owners[h])][p:p + length]
            w = ramp[:len(seg)].copy()
            if t == 0:
                w[:self.crossfade] = 1.0  # nothing to fade in from
            out[t:t + len(seg)] += w[:, None] * seg
            weight[t:t + len(seg)] += w
        return ex.clamp(out[:n] / np.maximum(weight[:n], 1e-9)[:, None])


@dataclass
class Mirror(Baseline):
    """Delayed, scaled mirror image of the speaker; speech articulation removed, head damped."""

    delay_s: float = 0.5
    gain: float = 0.6
    head_gain: float = 0.3
    name: str = "mirror"
    deterministic: bool = True

    def generate(self, conv: Conversation, seed: int = 0) -> F32:
        s = ex.mirror(speaker_held(conv)).astype(np.float64)
        d = round(self.delay_s * ex.FPS)
        delayed = np.concatenate([np.repeat(ex.NEUTRAL[None].astype(np.float64), d, axis=0), s])[:len(s)]
        gains = np.full(ex.DIM, self.gain)
        gains[ex.HEAD_SLICE] = self.head_gain
        gains[ex.indices(SPEECH_CHANNELS)] = 0.0
        # Damp head motion around the speaker's average pose so a turned head is not copied as a turn.
        centre = np.zeros(ex.DIM)
        centre[ex.HEAD_SLICE] = delayed[:, ex.HEAD_SLICE].mean(axis=0)
        return ex.clamp((delayed - centre) * gains)


@dataclass
class RuleStyle(Baseline):
    """The rule-based listener of ``style`` (sim/listeners.py) regenerated for this conversation.

    ``style`` ``"mix"``: every track draws its style from the generator's default mix, as the
    recorded listeners were drawn (module docstring).
    """

    style: str = "attentive"
    name: str = ""
    deterministic: bool = False

    def __post_init__(self) -> None:
        if self.style not in (*STYLES, "mix"):
            raise ValueError(f"unknown listener style {self.style!r}; expected one of {STYLES} or 'mix'")
        self.name = self.name or f"rule-{self.style}"

    def available(self, conv: Conversation) -> bool:
        return timeline_of(conv) is not None

    def generate(self, conv: Conversation, seed: int = 0) -> F32:
        timeline = timeline_of(conv)
        if timeline is None:
            raise ValueError(f"{conv.conversation_id}: no timeline in the metadata (a real recording?); "
                             f"the {self.name} baseline needs one")
        params, track_seed = self.draw(conv, seed)
        track = listener_track(params, timeline, conv.arrays["speaker_expression"], track_seed)
        return fit_length(track, conv.n_frames)

    def draw(self, conv: Conversation, seed: int = 0) -> tuple[ListenerParams, int]:
        """The listener (style and person) and the track seed that ``generate`` uses."""
        rng = np.random.default_rng(stable_seed(seed, conv.conversation_id, self.name))
        params = sample_listener(rng) if self.style == "mix" else sample_params(self.style, rng)
        return params, int(rng.integers(2**31))


BASELINE_NAMES: tuple[str, ...] = ("random-train", "nn-retrieval", "mirror", *(f"rule-{s}" for s in STYLES),
                                   "rule-mix")


def make_baselines(train: Iterable[Conversation], names: Sequence[str] = BASELINE_NAMES) -> list[Baseline]:
    """The named baselines, fitted on the training conversations where they need data.

    ``train`` is read once and may be a lazy iterator: only the listener tracks and the
    retrieval index are kept, not the conversations.
    """
    unknown = [n for n in names if n not in BASELINE_NAMES]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINE_NAMES)}")
    listeners: list[F32] = []

    def tap() -> Iterator[Conversation]:
        for conv in train:
            if conv.metadata.get("has_listener", True):
                listeners.append(np.asarray(conv.arrays["listener_expression"], np.float32))
                yield conv

    nn = NearestNeighbour.fit(tap()) if "nn-retrieval" in names else None
    if nn is None and "random-train" in names:
        for _ in tap():
            pass
    out: list[Baseline] = []
    for name in names:
        if name == "random-train":
            out.append(RandomFromTrain(listeners))
        elif name == "nn-retrieval":
            assert nn is not None
            out.append(nn)
        elif name == "mirror":
            out.append(Mirror())
        else:
            out.append(RuleStyle(name.removeprefix("rule-")))
    return out
