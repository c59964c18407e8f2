import json

import numpy as np
import pytest

from face_expr_ros import expression as ex
from face_expr_ros.learning import shards
from face_expr_ros.learning.dataset import WindowDataset


def make_conversation(cid: str, n: int = 90, seed: int = 0, n_mels: int = 40) -> shards.Conversation:
    rng = np.random.default_rng(seed)
    words = [("hello", 0.2, 0.6), ("there", 0.7, 1.1), ("friend", 2.0, 2.5)]
    arrays = {
        "speaker_expression": ex.clamp(rng.uniform(0, 1, (n, ex.DIM))),
        "speaker_face_present": np.ones(n, bool),
        "listener_expression": ex.clamp(rng.uniform(0, 1, (n, ex.DIM))),
        "audio_logmel": rng.normal(size=(n, n_mels)).astype(np.float32),
        "audio_energy": rng.normal(-40, 5, n).astype(np.float32),
        "audio_pitch": rng.uniform(0, 200, n).astype(np.float32),
        "audio_voiced": rng.uniform(0, 1, n).astype(np.float32),
        "audio_vad": rng.uniform(0, 1, n) > 0.5,
        "words_heard": shards.words_heard_per_frame(words, n),
    }
    return shards.Conversation(cid, arrays, words, {"style": "attentive", "has_listener": True})


def write_dataset(folder, n_conv=3):
    entries = []
    for k in range(n_conv):
        conv = make_conversation(f"c{k}", seed=k)
        _, digest = shards.write_conversation(folder, conv)
        entries.append({"id": conv.conversation_id, "split": "train", "sha256": digest})
    shards.write_manifest(folder, shards.Manifest({"command": "test"}, entries))


def test_round_trip_and_byte_identical(tmp_path):
    conv = make_conversation("abc")
    path, digest = shards.write_conversation(tmp_path / "a", conv)
    path2, digest2 = shards.write_conversation(tmp_path / "b", make_conversation("abc"))
    assert digest == digest2 and path.read_bytes() == path2.read_bytes()
    back = shards.read_conversation(path)
    assert back.words == conv.words and back.metadata == conv.metadata
    for name in shards.SCHEMA:
        np.testing.assert_array_equal(back.arrays[name], conv.arrays[name])
    assert back.transcript_until(40) == "hello there"
    assert back.transcript_until(0) == ""


def test_words_heard():
    words = [("a", 0.0, 0.5), ("b", 0.5, 1.0)]
    heard = shards.words_heard_per_frame(words, 40)
    assert heard[0] == 0 and heard[15] == 1 and heard[30] == 2 and heard[-1] == 2


def test_schema_errors_name_file_and_field(tmp_path):
    conv = make_conversation("x")
    conv.arrays["speaker_expression"] = conv.arrays["speaker_expression"].astype(np.float64)
    with pytest.raises(shards.ShardError, match="'speaker_expression' has dtype float64, schema says float32"):
        shards.write_conversation(tmp_path, conv)
    conv = make_conversation("x")
    conv.arrays["listener_expression"] = conv.arrays["listener_expression"][:, :50]
    with pytest.raises(shards.ShardError, match="'listener_expression' has shape"):
        shards.write_conversation(tmp_path, conv)
    conv = make_conversation("x")
    del conv.arrays["audio_vad"]
    with pytest.raises(shards.ShardError, match=r"missing \['audio_vad'\]"):
        shards.write_conversation(tmp_path, conv)
    conv = make_conversation("x")
    conv.arrays["audio_pitch"][3] = np.nan
    with pytest.raises(shards.ShardError, match="'audio_pitch' contains NaN"):
        shards.write_conversation(tmp_path, conv)


def test_version_mismatch_and_corrupt_file(tmp_path, monkeypatch):
    path, _ = shards.write_conversation(tmp_path, make_conversation("v"))
    monkeypatch.setattr(shards, "SCHEMA_VERSION", 99)
    with pytest.raises(shards.ShardError, match="schema version 1, this face_expr_ros reads version 99"):
        shards.read_conversation(path)
    monkeypatch.undo()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(shards.ShardError, match="bad.npz: not a readable shard"):
        shards.read_conversation(bad)
    with pytest.raises(shards.ShardError, match="shard not found"):
        shards.read_conversation(tmp_path / "nope.npz")


def test_manifest(tmp_path):
    write_dataset(tmp_path)
    manifest = shards.read_manifest(tmp_path)
    assert manifest.ids("train") == ["c0", "c1", "c2"] and manifest.ids("test") == []
    with pytest.raises(shards.ShardError, match="unknown split 'dev'"):
        manifest.ids("dev")
    payload = json.loads((tmp_path / "manifest.json").read_text())
    assert payload["data_hash"] == manifest.data_hash()
    payload["schema_version"] = 0
    (tmp_path / "manifest.json").write_text(json.dumps(payload))
    with pytest.raises(shards.ShardError, match="manifest.json: schema version 0"):
        shards.read_manifest(tmp_path)
    with pytest.raises(shards.ShardError, match="no manifest.json"):
        shards.read_manifest(tmp_path / "empty")


def test_window_dataset_alignment(tmp_path):
    write_dataset(tmp_path)
    data = WindowDataset(tmp_path, "train", window=16, horizon=4, stride=5)
    conv = data.conversations[0]
    first = data[0]
    assert first["speaker"].shape == (16, ex.DIM) and first["target"].shape == (4, ex.DIM)
    assert first["audio"].shape == (16, 44)
    tau = data.index[0].tau
    assert tau == 15
    np.testing.assert_array_equal(first["target"].numpy(), conv.arrays["listener_expression"][15:19])
    # Own past actions are shifted by one frame, zero before the conversation starts.
    np.testing.assert_array_equal(first["listener_past"][0].numpy(), np.zeros(ex.DIM))
    np.testing.assert_array_equal(first["listener_past"][1:].numpy(), conv.arrays["listener_expression"][0:15])
    later = data[3]
    tau = data.index[3].tau
    np.testing.assert_array_equal(later["listener_past"].numpy(),
                                  conv.arrays["listener_expression"][tau - 16:tau])
    assert int(later["words_heard"]) == int(conv.arrays["words_heard"][tau])
    # Windows never run past a conversation's end.
    assert all(ix.tau + 4 <= data.conversations[ix.conversation].n_frames for ix in data.index)
    # With a history delay D the own past ends D frames earlier.
    delayed = WindowDataset(tmp_path, "train", window=16, horizon=4, stride=5, history_delay=6)
    tau = delayed.index[3].tau
    np.testing.assert_array_equal(delayed[3]["listener_past"].numpy(),
                                  conv.arrays["listener_expression"][tau - 22:tau - 6])
    np.testing.assert_array_equal(delayed[0]["listener_past"][:7].numpy(), np.zeros((7, ex.DIM)))
    np.testing.assert_array_equal(delayed[0]["listener_past"][7:].numpy(), conv.arrays["listener_expression"][0:9])
    with pytest.raises(ValueError, match="no conversations"):
        WindowDataset(tmp_path, "test")
