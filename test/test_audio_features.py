"""Audio features on synthesized signals: pitch accuracy, VAD, streaming == batch, input checks."""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from face_expr_ros.perception.audio_features import (
    AudioFeatures,
    FeatureConfig,
    PolyphaseResampler,
    StreamingAudioFeatures,
    compute,
    mel_filterbank,
)

SR = 16000


def sine(f0: float, seconds: float, rate: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return amp * np.sin(2 * np.pi * f0 * t)


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16), w.getframerate()


@pytest.fixture(scope="module")
def espeak_speech(tmp_path_factory) -> tuple[np.ndarray, int]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng): no synthetic speech to test on")
    out = tmp_path_factory.mktemp("espeak") / "speech.wav"
    subprocess.run([exe, "-w", str(out), "The quick brown fox jumps over the lazy dog."], check=True)
    return read_wav(out)


# ----------------------------------------------------------------- frames and alignment
def test_frame_count_and_times():
    feats = compute(np.zeros(SR * 2, dtype=np.int16), SR)
    assert feats.n_frames == 60
    np.testing.assert_allclose(feats.times, np.arange(60) / 30.0)
    assert feats.log_mel.shape == (60, 40)
    # ceil(n * 30 / rate): a clip one sample longer than 2 s gains a frame centred inside it.
    assert compute(np.zeros(SR * 2 + 1, dtype=np.int16), SR).n_frames == 61
    assert compute(np.zeros(1), SR).n_frames == 1


def test_frame_k_is_centred_on_time_k_over_30():
    # A click at exactly t = 1 s must be loudest in frame 30.
    x = np.zeros(SR * 2)
    x[SR] = 1.0
    feats = compute(x, SR)
    assert int(np.argmax(feats.rms_db)) == 30
    # Also after resampling from 44.1 kHz (the resampler is zero phase).
    y = np.zeros(44100 * 2)
    y[44100 - 2 : 44100 + 3] = [0.2, 0.6, 1.0, 0.6, 0.2]
    assert int(np.argmax(compute(y, 44100).rms_db)) == 30


# ----------------------------------------------------------------- pitch
@pytest.mark.parametrize("f0", [70.0, 100.0, 155.5, 220.0, 330.0, 480.0])
def test_sine_pitch_within_two_percent(f0):
    feats = compute(sine(f0, 1.0), SR)
    inner = slice(2, -2)  # the edge frames are half silence
    assert np.all(feats.voiced_prob[inner] > 0.9)
    np.testing.assert_allclose(feats.f0_hz[inner], f0, rtol=0.02)


def test_pitch_of_resampled_int16_harmonic_tone():
    rate = 22050
    t = np.arange(rate) / rate
    tone = sum(0.3 / h * np.sin(2 * np.pi * 140.0 * h * t) for h in (1, 2, 3, 4))
    feats = compute((tone * 20000).astype(np.int16), rate)
    np.testing.assert_allclose(np.median(feats.f0_hz[2:-2]), 140.0, rtol=0.02)


def test_noise_is_unvoiced():
    rng = np.random.default_rng(1)
    feats = compute(0.3 * rng.standard_normal(SR), SR)
    assert np.mean(feats.voiced_prob < 0.5) > 0.9
    assert np.mean(feats.f0_hz == 0) > 0.9


# ----------------------------------------------------------------- energy and VAD
def test_silence_gives_no_voice():
    feats = compute(np.zeros(SR * 3, dtype=np.int16), SR)
    assert feats.vad.sum() == 0
    assert np.all(feats.f0_hz == 0)
    assert np.all(feats.rms_db == pytest.approx(-120.0))
    assert np.isfinite(feats.log_mel).all()


def test_rms_db_of_full_scale_sine():
    feats = compute(sine(1000.0, 1.0, amp=1.0), SR)
    np.testing.assert_allclose(feats.rms_db[2:-2], -3.01, atol=0.1)


def test_faint_noise_is_not_voice():
    rng = np.random.default_rng(2)
    feats = compute(0.001 * rng.standard_normal(SR * 2), SR)  # about -60 dBFS
    assert feats.vad.sum() == 0


def test_espeak_speech_vad(espeak_speech):
    speech, rate = espeak_speech
    rng = np.random.default_rng(3)
    pad = np.zeros(rate, dtype=np.int16)
    clip = np.concatenate([pad, speech, pad])
    noisy = np.clip(clip + rng.normal(0, 30, clip.size), -32768, 32767).astype(np.int16)  # ~ -60 dBFS hiss
    feats = compute(noisy, rate)
    clean = compute(clip, rate)
    words = clean.rms_db > -30.0  # frames where the synthesizer is clearly producing sound
    assert words.sum() > 30
    assert feats.vad[words].mean() > 0.95
    t = feats.times
    end = (pad.size + speech.size) / rate
    assert feats.vad[t < 0.9].sum() == 0  # leading silence
    assert feats.vad[t > end + 0.45].sum() == 0  # trailing silence after the 0.3 s hangover
    voiced = feats.f0_hz[feats.f0_hz > 0]
    assert 60 < np.median(voiced) < 250  # espeak's default male voice


# ----------------------------------------------------------------- streaming
def assert_same(a: AudioFeatures, b: AudioFeatures) -> None:
    assert a.n_frames == b.n_frames
    for f in fields(AudioFeatures):
        got, want = getattr(a, f.name), getattr(b, f.name)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=f.name)
    np.testing.assert_array_equal(a.vad, b.vad)


@pytest.mark.parametrize("rate", [SR, 22050, 8000])
def test_streaming_equals_batch(rate):
    rng = np.random.default_rng(rate)
    n = int(rate * 2.3)
    t = np.arange(n) / rate
    x = 0.4 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0) + 0.01 * rng.standard_normal(n)
    pcm = (x * 32767).astype(np.int16)
    batch = compute(pcm, rate)
    stream = StreamingAudioFeatures(rate)
    cuts = np.sort(rng.integers(0, n, size=40))
    parts, start = [], 0
    for cut in [*cuts, cuts[-1], n]:  # includes empty and single-sample chunks
        parts.append(stream.push(pcm[start:cut]))
        start = cut
    parts.append(stream.flush())
    assert_same(AudioFeatures.concatenate(parts, 40), batch)
    # Frames arrive while streaming, not only at the end.
    assert sum(p.n_frames for p in parts[:-1]) >= batch.n_frames - 2


def test_stream_restarts_after_flush():
    x = (sine(200.0, 0.5) * 30000).astype(np.int16)
    stream = StreamingAudioFeatures(SR)
    first = AudioFeatures.concatenate([stream.push(x), stream.flush()], 40)
    second = AudioFeatures.concatenate([stream.push(x), stream.flush()], 40)
    assert_same(first, second)


@pytest.mark.parametrize(("rin", "rout"), [(22050, 16000), (48000, 16000), (8000, 16000), (44100, 16000)])
def test_streaming_resampler_matches_resample_poly(rin, rout):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(7001)
    r = PolyphaseResampler(rin, rout)
    y = np.concatenate([r.process(x[:1]), r.process(x[1:3000]), r.process(x[3000:]), r.flush()])
    g = np.gcd(rin, rout)
    np.testing.assert_allclose(y, signal.resample_poly(x, rout // g, rin // g), atol=1e-12)


def test_mel_filterbank_shape_and_coverage():
    fb = mel_filterbank(40, 512, SR)
    assert fb.shape == (40, 257)
    assert fb.max() == pytest.approx(1.0, abs=0.05)
    centres = fb.argmax(axis=1)
    assert np.all(np.diff(centres) >= 0)  # bands ordered low to high
    assert np.all(fb.sum(axis=0)[1:-1] > 0)  # every inner FFT bin is covered


# ----------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("pcm", "rate", "match"),
    [
        (np.zeros(0, dtype=np.int16), SR, "empty"),
        (np.array([0.0, np.nan, 0.1]), SR, "NaN"),
        (np.array([0.0, np.inf]), SR, "NaN/inf"),
        (np.zeros(10, dtype=np.uint8), SR, "dtype"),
        (np.zeros(10, dtype=np.int32), SR, "dtype"),
        (np.zeros((100, 2), dtype=np.int16), SR, "stereo"),
        (np.zeros(10, dtype=np.int16), 0, "sample_rate"),
        (np.zeros(10, dtype=np.int16), -16000, "sample_rate"),
        (np.zeros(10, dtype=np.int16), 16000.5, "sample_rate"),
        ([0, 1, 2], SR, "numpy array"),
    ],
)
def test_bad_input_raises_clear_value_error(pcm, rate, match):
    with pytest.raises(ValueError, match=match):
        compute(pcm, rate)


def test_stream_accepts_empty_chunk_but_rejects_stereo():
    stream = StreamingAudioFeatures(SR)
    assert stream.push(np.zeros(0, dtype=np.int16)).n_frames == 0
    with pytest.raises(ValueError, match="mono"):
        stream.push(np.zeros((10, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="sample_rate"):
        StreamingAudioFeatures(0)


def test_bad_config():
    with pytest.raises(ValueError, match="f0_min"):
        FeatureConfig(f0_min=500, f0_max=100)
    with pytest.raises(ValueError, match="rate"):
        FeatureConfig(rate=0)
