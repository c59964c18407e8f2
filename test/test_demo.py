"""The demo (`make demo`) end to end on a short conversation."""

import json
import shutil

import pytest

from face_expr_ros import bags, media_io
from face_expr_ros.demo import run_demo


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None,
                    reason="espeak-ng and ffmpeg are installed by `make setup`")
def test_demo_writes_video_bag_plots_and_metrics(tmp_path):
    report = run_demo(tmp_path, seed=3, seconds=3.0, progress=False)
    assert all(path.exists() for path in report.written)
    frames = list(media_io.iter_video(tmp_path / "demo.mp4"))
    assert len(frames) == 90 and frames[0].shape[1] == 2 * 384
    pcm, _ = media_io.read_wav(media_io.extract_audio(tmp_path / "demo.mp4", tmp_path / "a.wav"))
    assert abs(pcm).max() > 1000, "the demo video has the speech as its sound track"
    assert "/camera/image_raw/compressed" in bags.bag_topics(tmp_path / "conversation" / "bag_mcap")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 1 <= metrics["simulated_rater_scores"]["overall"] <= 5
    # `make demo` again: the second run replaces the first instead of failing on the existing bags.
    again = run_demo(tmp_path, seed=3, seconds=2.0, progress=False)
    assert all(path.exists() for path in again.written)
    assert len(list(media_io.iter_video(tmp_path / "demo.mp4"))) == 60
