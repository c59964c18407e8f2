import numpy as np
import pytest

from face_expr_ros import media_io


def test_wav_round_trip_and_stereo(tmp_path):
    pcm = (np.sin(np.arange(1600) / 5) * 8000).astype(np.int16)
    media_io.write_wav(tmp_path / "a.wav", pcm, 16000)
    back, rate = media_io.read_wav(tmp_path / "a.wav")
    assert rate == 16000
    np.testing.assert_array_equal(back, pcm)
    import wave

    with wave.open(str(tmp_path / "s.wav"), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(np.stack([pcm, np.zeros_like(pcm)], axis=1).astype("<i2").tobytes())
    mono, rate = media_io.read_wav(tmp_path / "s.wav")
    assert rate == 8000 and mono.shape == pcm.shape
    np.testing.assert_allclose(mono, pcm / 2, atol=1)


def test_wav_errors(tmp_path):
    with pytest.raises(media_io.MediaError, match="audio file not found"):
        media_io.read_wav(tmp_path / "none.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF1234WAVEjunk")
    with pytest.raises(media_io.MediaError, match="not a readable WAV"):
        media_io.read_wav(tmp_path / "bad.wav")
    with pytest.raises(media_io.MediaError, match="mono int16"):
        media_io.write_wav(tmp_path / "x.wav", np.zeros(10, np.float32), 16000)


def test_video_write_read_mux_extract(tmp_path):
    frames = [np.full((48, 64, 3), 20 * k, np.uint8) for k in range(10)]
    with media_io.VideoWriter(tmp_path / "v.mp4", 30, (64, 48)) as writer:
        for frame in frames:
            writer.write(frame)
        with pytest.raises(media_io.MediaError, match="expected 48x64x3"):
            writer.write(np.zeros((10, 10, 3), np.uint8))
    back = list(media_io.iter_video(tmp_path / "v.mp4"))
    assert len(back) == 10 and back[0].shape == (48, 64, 3)
    assert abs(int(back[5].mean()) - 100) < 8
    assert media_io.video_fps(tmp_path / "v.mp4") == pytest.approx(30, abs=0.1)
    tone = (np.sin(np.arange(16000 // 3) * 0.3) * 9000).astype(np.int16)
    media_io.write_wav(tmp_path / "t.wav", tone, 16000)
    muxed = media_io.mux_audio(tmp_path / "v.mp4", tmp_path / "t.wav", tmp_path / "m.mp4")
    pcm, rate = media_io.read_wav(media_io.extract_audio(muxed, tmp_path / "e.wav", 16000))
    assert rate == 16000 and abs(len(pcm) - len(tone)) < 1600
    assert np.abs(pcm).max() > 3000
    with pytest.raises(media_io.MediaError, match="no audio track"):
        media_io.extract_audio(tmp_path / "v.mp4", tmp_path / "none.wav")
    with pytest.raises(media_io.MediaError, match="video file not found"):
        list(media_io.iter_video(tmp_path / "nope.mp4"))
