"""Speech timelines: word timings, utterance spans and pauses, with or without audio.

Two paths yield the same :class:`Timeline`:

* :func:`synthesize_timeline` runs espeak-ng once per word (cached), trims the leading and
  trailing silence of each word and concatenates the words with seeded gaps, so every word's
  start and end are known exactly. Audio is int16 mono PCM at 16 kHz (espeak-ng's 22050 Hz
  output is resampled with a polyphase filter, 22050 * 320/441 = 16000).
* :func:`model_timeline` needs no audio: a word lasts ``0.04 + n_syllables / r`` seconds,
  with the syllable rate ``r = 1.45 * rate_wpm / 60`` (conversational English averages about
  1.45 syllables per word) scaled by an emotion factor and a lognormal jitter
  (sigma 0.12). It is ~1000x faster and is meant for feature-level bulk generation.

Pause structure is identical in both paths for the same seed (the same draws are made in
the same order): 0.12-0.30 s after a comma, 0.35-0.90 s after an ellipsis (hesitation),
0.35-1.6 s between utterances, 0.8-2.0 s after a question (the speaker leaves room for an
answer). These pauses are where listeners place backchannels (Ward & Tsukahara 2000).
Both are pure functions of their inputs.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from face_expr_ros.expression import FPS
from face_expr_ros.sim.scripts import EMOTIONS, SpeakerProfile, Utterance

SAMPLE_RATE = 16000
# espeak-ng speaks isolated words with citation-form length; this speed-up brings word-by-word
# synthesis to about the duration model's connected-speech rate.
ISOLATED_WORD_SPEEDUP = 1.25
MIN_DURATION_S = 20.0
MAX_DURATION_S = 120.0

# Emotion -> (rate factor, pitch offset, amplitude): sadness slow and low, anger/fear fast,
# joy/surprise high, following the vocal-affect profiles reviewed by Scherer (2003).
EMOTION_PROSODY: dict[str, tuple[float, int, int]] = {
    "neutral": (1.00, 0, 100),
    "joy": (1.06, 10, 115),
    "sadness": (0.84, -8, 80),
    "anger": (1.10, 4, 140),
    "surprise": (1.05, 15, 120),
    "fear": (1.12, 8, 100),
}


@dataclass(frozen=True)
class WordTiming:
    """One spoken word: ``word`` without punctuation, times in seconds from the start."""

    word: str
    start: float
    end: float
    utt_index: int
    syllables: int


@dataclass(frozen=True)
class UtteranceSpan:
    """Where an utterance lies on the timeline."""

    utt_id: str
    text: str
    emotion: str
    is_question: bool
    start: float
    end: float


@dataclass(frozen=True)
class Pause:
    """A silence; ``kind`` is 'clause' (comma), 'hesitation' (ellipsis), 'turn' (between
    utterances), 'question' (after a question), 'lead' or 'trail'."""

    start: float
    end: float
    kind: str


@dataclass
class Timeline:
    """Word, utterance and pause timing of one speaker's speech (optionally with its audio)."""

    duration_s: float
    words: list[WordTiming]
    utterances: list[UtteranceSpan]
    pauses: list[Pause]
    audio: NDArray[np.int16] | None = field(default=None, repr=False)
    sample_rate: int = SAMPLE_RATE

    def n_frames(self, fps: float = FPS) -> int:
        return round(self.duration_s * fps)

    def speech_activity(self, fps: float = FPS) -> NDArray[np.bool_]:
        """Per-frame True while a word is being spoken."""
        return _spans_to_mask([(w.start, w.end) for w in self.words], self.n_frames(fps), fps)

    def utterance_index(self, fps: float = FPS) -> NDArray[np.int64]:
        """Per-frame index of the current utterance, -1 before the first; pauses keep the last."""
        t = np.arange(self.n_frames(fps)) / fps
        starts = np.array([u.start for u in self.utterances])
        return np.searchsorted(starts, t, side="right").astype(np.int64) - 1

    def emotion_index(self, fps: float = FPS) -> NDArray[np.int64]:
        """Per-frame index into ``EMOTIONS`` of the emotion being conveyed.

        The emotion of an utterance persists through the pause that follows it: the news has
        been told and the listener is still reacting to it.
        """
        ui = self.utterance_index(fps)
        emo = np.array([EMOTIONS.index(u.emotion) for u in self.utterances] + [0], dtype=np.int64)
        return np.where(ui >= 0, emo[ui], 0)

    def to_dict(self) -> dict[str, Any]:
        """Timing only (no audio), as plain JSON types: stored with dataset shards."""
        return {
            "duration_s": self.duration_s,
            "sample_rate": self.sample_rate,
            "words": [asdict(w) for w in self.words],
            "utterances": [asdict(u) for u in self.utterances],
            "pauses": [asdict(p) for p in self.pauses],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timeline:
        """Inverse of :meth:`to_dict` (the audio is not restored)."""
        return cls(
            float(data["duration_s"]),
            [WordTiming(**w) for w in data["words"]],
            [UtteranceSpan(**u) for u in data["utterances"]],
            [Pause(**p) for p in data["pauses"]],
            None,
            int(data.get("sample_rate", SAMPLE_RATE)),
        )

    def backchannel_places(self, min_pause_s: float = 0.2) -> list[Pause]:
        """Pauses after which a listener may respond (clause ends, hesitations, turn ends)."""
        return [p for p in self.pauses
                if p.kind in ("clause", "hesitation", "turn", "question") and p.end - p.start >= min_pause_s]


def _spans_to_mask(spans: list[tuple[float, float]], n: int, fps: float) -> NDArray[np.bool_]:
    diff = np.zeros(n + 1, dtype=np.int64)
    for a, b in spans:
        i, j = round(a * fps), round(b * fps)
        i, j = max(0, min(n, i)), max(0, min(n, j))
        if j > i:
            diff[i] += 1
            diff[j] -= 1
    return np.cumsum(diff[:-1]) > 0


_VOWEL_GROUPS = re.compile(r"[aeiouy]+")


def count_syllables(word: str) -> int:
    """Vowel-group syllable count with the silent-final-e rule (good to about +-1)."""
    w = re.sub(r"[^a-z]", "", word.lower())
    if not w:
        return 1
    n = len(_VOWEL_GROUPS.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee", "ye")) and n > 1:
        n -= 1
    return max(1, n)


def clean_word(token: str) -> str:
    """The speakable part of a display token (punctuation dropped, apostrophes kept)."""
    return re.sub(r"[^A-Za-z']", "", token)


def _gap_after(token: str, is_last: bool, utt: Utterance,
               rng: np.random.Generator) -> tuple[float, str | None]:
    """Silence after ``token`` and its pause kind (None for the ordinary inter-word gap)."""
    if is_last:
        if utt.is_question:
            return float(rng.uniform(0.8, 2.0)), "question"
        return float(rng.uniform(0.35, 1.6)), "turn"
    if token.endswith("..."):
        return float(rng.uniform(0.35, 0.9)), "hesitation"
    if token.endswith((",", ";", ":")):
        return float(rng.uniform(0.12, 0.30)), "clause"
    return float(rng.uniform(0.01, 0.06)), None


def _build(
    utterances: tuple[Utterance, ...] | list[Utterance],
    seed: int,
    word_duration: object,
) -> tuple[float, list[WordTiming], list[UtteranceSpan], list[Pause], list[tuple[float, int]]]:
    """Lay words out in time. ``word_duration(word, utt, rng) -> (seconds, key)``.

    Returns the duration, words, spans, pauses and (start, key) placements for audio.
    """
    rng = np.random.default_rng([seed, 0x5bee])
    t = float(rng.uniform(0.3, 0.8))
    pauses = [Pause(0.0, t, "lead")]
    words: list[WordTiming] = []
    spans: list[UtteranceSpan] = []
    placements: list[tuple[float, int]] = []
    trail = float(rng.uniform(0.6, 1.5))
    for ui, utt in enumerate(utterances):
        tokens = utt.words
        snapshot = (t, len(words), len(spans), len(pauses), len(placements))
        u_start = t
        for k, tok in enumerate(tokens):
            dur, key = word_duration(tok, utt, rng)  # type: ignore[operator]
            w = clean_word(tok) or tok
            words.append(WordTiming(w, t, t + dur, ui, count_syllables(w)))
            placements.append((t, key))
            t += dur
            gap, kind = _gap_after(tok, k == len(tokens) - 1, utt, rng)
            if kind is not None and k == len(tokens) - 1:
                spans.append(UtteranceSpan(utt.utt_id, utt.text, utt.emotion, utt.is_question, u_start, t))
            if kind is not None:
                pauses.append(Pause(t, t + gap, kind))
            t += gap
        if t - gap + trail > MAX_DURATION_S and ui > 0:
            # Roll the utterance back: it would not fit in the maximum duration.
            t = snapshot[0]
            del words[snapshot[1]:], spans[snapshot[2]:], pauses[snapshot[3]:], placements[snapshot[4]:]
            break
    # The last inter-utterance pause becomes the trailing silence.
    if pauses and pauses[-1].kind in ("turn", "question"):
        t = pauses[-1].start
        pauses[-1] = Pause(t, t + trail, "trail")
        t += trail
    duration = float(np.clip(t, MIN_DURATION_S, MAX_DURATION_S))
    if duration > t:
        pauses[-1] = Pause(pauses[-1].start, duration, "trail")
    return duration, words, spans, pauses, placements


def model_timeline(utterances: tuple[Utterance, ...] | list[Utterance], profile: SpeakerProfile,
                   seed: int) -> Timeline:
    """Word timings from a duration model, no audio (see the module docstring)."""

    def dur(tok: str, utt: Utterance, rng: np.random.Generator) -> tuple[float, int]:
        rate_f = EMOTION_PROSODY[utt.emotion][0]
        syl_rate = 1.45 * profile.rate_wpm * rate_f / 60.0
        d = (0.04 + count_syllables(clean_word(tok)) / syl_rate) * float(np.exp(rng.normal(0.0, 0.12)))
        return d, -1

    duration, words, spans, pauses, _ = _build(utterances, seed, dur)
    return Timeline(duration, words, spans, pauses, None)


# --- espeak-ng -------------------------------------------------------------------------------

class EspeakMissingError(RuntimeError):
    """espeak-ng is not installed."""


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def _require_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise EspeakMissingError(
            "espeak-ng was not found on PATH; install it with `sudo apt-get install -y espeak-ng` "
            "(Debian/Ubuntu) or use model_timeline()/with_audio=False for the no-audio fast path"
        )
    return exe


def _parse_wav(raw: bytes) -> tuple[NDArray[np.int16], int]:
    """Samples and rate of espeak-ng's --stdout WAV (its size fields are bogus when streaming)."""
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise RuntimeError("espeak-ng did not return a WAV stream")
    rate = int.from_bytes(raw[24:28], "little")
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], int.from_bytes(raw[pos + 4:pos + 8], "little")
        if cid == b"data":
            data = raw[pos + 8:]
            return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.int16), rate
        pos += 8 + size
    raise RuntimeError("no data chunk in espeak-ng output")


@functools.lru_cache(maxsize=20000)
def espeak_word(word: str, voice: str, rate: int, pitch: int, amplitude: int) -> NDArray[np.int16]:
    """One word spoken by espeak-ng, silence-trimmed, int16 at 16 kHz (cached)."""
    from scipy.signal import resample_poly

    exe = _require_espeak()
    res = subprocess.run(
        [exe, "-v", voice, "-s", str(rate), "-p", str(pitch), "-a", str(amplitude), "--stdout", word],
        capture_output=True, check=False, timeout=30,
    )
    if res.returncode != 0:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {res.stderr.decode(errors='replace')}")
    pcm, sr = _parse_wav(res.stdout)
    x = pcm.astype(np.float64)
    if sr != SAMPLE_RATE:
        g = np.gcd(SAMPLE_RATE, sr)
        x = resample_poly(x, SAMPLE_RATE // g, sr // g)
    # Trim to where a 5 ms RMS exceeds 2 % of the word's peak: espeak pads words with silence.
    win = SAMPLE_RATE // 200
    n = len(x) // win
    if n == 0:
        return np.zeros(0, dtype=np.int16)
    rms = np.sqrt(np.mean(x[: n * win].reshape(n, win) ** 2, axis=1))
    on = np.flatnonzero(rms > 0.02 * max(rms.max(), 1e-9))
    if on.size == 0:
        return np.zeros(0, dtype=np.int16)
    x = x[on[0] * win:(on[-1] + 1) * win]
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def synthesize_timeline(utterances: tuple[Utterance, ...] | list[Utterance], profile: SpeakerProfile,
                        seed: int) -> Timeline:
    """Audio and exact word timings by espeak-ng, word by word (see the module docstring).

    Raises :class:`EspeakMissingError` with install instructions when espeak-ng is absent.
    """
    _require_espeak()
    clips: list[NDArray[np.int16]] = []

    def dur(tok: str, utt: Utterance, rng: np.random.Generator) -> tuple[float, int]:
        rate_f, dp, amp = EMOTION_PROSODY[utt.emotion]
        w = clean_word(tok) or "um"
        # Small per-word pitch jitter from the seeded stream keeps prosody from being monotone.
        pitch = int(np.clip(profile.pitch + dp + int(rng.integers(-3, 4)), 0, 99))
        rate = round(profile.rate_wpm * rate_f * ISOLATED_WORD_SPEEDUP)
        clip = espeak_word(w, profile.voice, rate, pitch, amp)
        clips.append(clip)
        return max(len(clip), 1) / SAMPLE_RATE, len(clips) - 1

    duration, words, spans, pauses, placements = _build(utterances, seed, dur)
    audio = np.zeros(round(duration * SAMPLE_RATE), dtype=np.int32)
    for start, key in placements:
        clip = clips[key]
        i = round(start * SAMPLE_RATE)
        j = min(len(audio), i + len(clip))
        audio[i:j] += clip[: j - i]
    return Timeline(duration, words, spans, pauses, np.clip(audio, -32768, 32767).astype(np.int16))


def energy_envelope(audio: NDArray[np.int16], n_frames: int, sample_rate: int = SAMPLE_RATE,
                    fps: float = FPS) -> NDArray[np.float32]:
    """Per-frame RMS energy in [0, 1] (normalised by the 95th percentile of voiced frames)."""
    hop = sample_rate / fps
    x = audio.astype(np.float64)
    idx = (np.arange(n_frames)[:, None] * hop + np.arange(int(hop))[None, :]).astype(np.int64)
    idx = np.clip(idx, 0, max(len(x) - 1, 0))
    if len(x) == 0:
        return np.zeros(n_frames, dtype=np.float32)
    rms = np.sqrt(np.mean(x[idx] ** 2, axis=1))
    ref = np.percentile(rms[rms > 0], 95) if np.any(rms > 0) else 1.0
    return np.clip(rms / max(ref, 1e-9), 0.0, 1.0).astype(np.float32)
