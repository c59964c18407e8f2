"""`face-expr data synth / rate / stats` on a small dataset, through the real command."""

import json
import shutil

import numpy as np
import pytest

from face_expr_ros import cli
from face_expr_ros.learning import shards

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "ds"
    assert cli.main(["data", "synth", str(folder), "-n", "3", "--seed", "7", "--workers", "2"]) == 0
    return folder


def test_synth_is_byte_identical_whatever_the_workers(dataset, tmp_path):
    again = tmp_path / "again"
    assert cli.main(["data", "synth", str(again), "-n", "3", "--seed", "7", "--workers", "1"]) == 0
    names = sorted(p.name for p in dataset.glob("*.npz"))
    assert names == sorted(p.name for p in again.glob("*.npz")) and len(names) == 3
    for name in [*names, "manifest.json"]:
        assert (dataset / name).read_bytes() == (again / name).read_bytes(), name


def test_shards_hold_real_speech_features(dataset):
    conv = next(shards.iter_conversations(dataset))
    vad = conv.arrays["audio_vad"]
    assert 0.2 < vad.mean() < 0.95, "speech with pauses: voice activity neither always on nor off"
    voiced_pitch = conv.arrays["audio_pitch"][vad & (conv.arrays["audio_voiced"] > 0.5)]
    assert 60 < np.median(voiced_pitch) < 400
    assert conv.words and conv.arrays["words_heard"][-1] == len(conv.words)
    assert "timeline" in conv.metadata and conv.metadata["listener_style"]


def test_rate_and_stats(dataset, capsys):
    assert cli.main(["data", "rate", str(dataset), "--panel-seed", "3", "--raters", "4"]) == 0
    ratings = json.loads((dataset / "ratings.json").read_text())
    assert len(ratings["conversations"]) == 3
    for scores in ratings["conversations"].values():
        assert all(1.0 <= scores[c] <= 5.0 for c in ("empathy", "appropriateness", "engagement", "naturalness"))
    capsys.readouterr()
    assert cli.main(["data", "stats", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "conversations: 3" in out and "simulated rater scores" in out
    assert (dataset / "stats" / "mix.png").is_file() and (dataset / "stats" / "rater_scores.png").is_file()


def test_synth_refuses_a_non_empty_folder(dataset, capsys):
    assert cli.main(["data", "synth", str(dataset), "-n", "1"]) == 2
    assert "exists and is not empty" in capsys.readouterr().out
