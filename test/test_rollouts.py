"""Training on the policy's own histories: rollout files, windows that carry them, and SFT using them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_sft import _cfg, write_tiny_dataset

from face_expr_ros import expression as ex
from face_expr_ros.learning import shards
from face_expr_ros.learning.dataset import WindowDataset
from face_expr_ros.learning.rollouts import (
    RolloutError,
    collect_rollouts,
    load_rollouts,
    save_rollouts,
    shard_fingerprints,
)
from face_expr_ros.learning.sft import make_batch, parse_args, train
from face_expr_ros.policy.model_dir import load_policy
from face_expr_ros.policy.tokenizer import ActionTokenizer


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("rolldata"))


@pytest.fixture(scope="module")
def tiny_policy(tiny_data, tmp_path_factory):
    return train(_cfg(tiny_data, tmp_path_factory.mktemp("rollrun") / "run", steps=20))


def _batch_parts(ds: WindowDataset):
    raw = torch.utils.data.default_collate([ds[i] for i in range(0, len(ds), max(1, len(ds) // 48))])
    tok = ActionTokenizer.fit(np.concatenate([c.arrays["listener_expression"] for c in ds.conversations]), horizon=8)
    texts, offsets = torch.zeros(10_000, 384), torch.zeros(len(ds.conversations), dtype=torch.long)
    return raw, tok, texts, offsets, torch.zeros(len(ds.conversations), 8)


def test_windows_carry_the_rollout_over_the_same_frames_and_batches_show_it(tiny_data):
    ds = WindowDataset(tiny_data, "train", window=16, horizon=8, history_delay=2)
    recorded = [c.arrays["listener_expression"] for c in ds.conversations]
    ds.attach_rollouts([r + 1.0 for r in recorded])  # every frame of the rollout differs from the recording
    item = ds[5]
    started = (item["listener_past"] != 0).any(1)  # frames before the conversation are zeros in both
    assert started.any()
    torch.testing.assert_close(item["rollout_past"][started], item["listener_past"][started] + 1.0)
    assert (item["rollout_past"][~started] == 0).all()

    raw, tok, texts, offsets, personas = _batch_parts(ds)
    plain = make_batch(raw, tok, texts, offsets, personas, torch.device("cpu"))
    own = make_batch(raw, tok, texts, offsets, personas, torch.device("cpu"), rollout_share=1.0,
                     generator=torch.Generator().manual_seed(0))
    assert torch.equal(own["listener_past"], raw["rollout_past"])
    assert torch.equal(own["base"], plain["base"]) and torch.equal(own["deltas"], plain["deltas"])  # target kept
    half = make_batch(raw, tok, texts, offsets, personas, torch.device("cpu"), rollout_share=0.5,
                      generator=torch.Generator().manual_seed(0))["listener_past"]
    from_rollout = (half == raw["rollout_past"]).flatten(1).all(1)
    from_recording = (half == raw["listener_past"]).flatten(1).all(1)
    assert 0 < int(from_rollout.sum()) < len(half) and bool((from_rollout | from_recording).all())
    # Hiding applies on top: with every shown history from the rollout, the rest are zeros.
    mixed = make_batch(raw, tok, texts, offsets, personas, torch.device("cpu"), rollout_share=1.0, history_dropout=0.5,
                       generator=torch.Generator().manual_seed(0))["listener_past"]
    hidden = (mixed == 0).flatten(1).all(1)
    assert 0 < int(hidden.sum()) < len(mixed)
    assert torch.equal(mixed[~hidden], raw["rollout_past"][~hidden])


def test_rollout_share_without_rollouts_and_mismatched_tracks_are_refused(tiny_data):
    ds = WindowDataset(tiny_data, "train", window=16, horizon=8)
    raw, tok, texts, offsets, personas = _batch_parts(ds)
    with pytest.raises(ValueError, match="attach_rollouts"):
        make_batch(raw, tok, texts, offsets, personas, torch.device("cpu"), rollout_share=0.5)
    with pytest.raises(ValueError, match="one rollout track per conversation"):
        ds.attach_rollouts([c.arrays["listener_expression"][:-1] for c in ds.conversations])


def test_collect_rollouts_plays_each_conversation_as_its_listener(tiny_data, tiny_policy, tmp_path):
    conversations = list(shards.iter_conversations(tiny_data, "train"))
    tracks, meta = collect_rollouts(tiny_policy, tiny_data, progress=False)
    assert list(tracks) == [c.conversation_id for c in conversations]
    assert meta["data_hash"] == shards.read_manifest(tiny_data).data_hash() and meta["split"] == "train"
    for conv, track in zip(conversations, tracks.values()):
        assert track.shape == (conv.n_frames, ex.DIM) and np.isfinite(track).all()
        assert ex.is_valid(track)
        assert not np.allclose(track, conv.arrays["listener_expression"], atol=1e-3)  # generated, not copied
    again, _ = collect_rollouts(tiny_policy, tiny_data, progress=False)
    assert all(np.array_equal(tracks[k], again[k]) for k in tracks)  # seeded

    path = tmp_path / "rollouts.npz"
    save_rollouts(path, tracks, meta)
    fingerprints = shard_fingerprints(shards.read_manifest(tiny_data), "train")
    assert meta["shards"] == fingerprints
    loaded = load_rollouts(path, conversations, fingerprints)
    assert all(np.array_equal(a, tracks[c.conversation_id]) for a, c in zip(loaded, conversations))
    # The same ids and lengths in other data (another seed): refused, naming the conversation.
    other = {c["id"]: c["sha256"][:16] for c in shards.read_manifest(
        write_tiny_dataset(tmp_path / "other", seed=1)).entries("train")}
    with pytest.raises(RolloutError, match=rf"track {conversations[0].conversation_id} was played on another version"):
        load_rollouts(path, conversations, other)

    with pytest.raises(ValueError, match="--rollout-share must be in"):
        train(_cfg(tiny_data, tmp_path / "bad", steps=1, export_onnx=False, rollouts=str(path), rollout_share=1.5))
    # SFT on them: the option reaches the windows and the run's record.
    run = train(_cfg(tiny_data, tmp_path / "run2", steps=10, export_onnx=False, rollouts=str(path),
                     rollout_share=0.5))
    assert load_policy(run, need_onnx=False).meta["sft"]["rollouts"] == str(path)


def test_bad_rollout_files_name_the_file_and_the_conversation(tiny_data, tmp_path):
    conversations = list(shards.iter_conversations(tiny_data, "train"))
    tracks = {c.conversation_id: c.arrays["listener_expression"].copy() for c in conversations}
    partial = tmp_path / "partial.npz"
    save_rollouts(partial, {k: v for k, v in list(tracks.items())[1:]}, {"data": "elsewhere"})
    first = conversations[0].conversation_id
    with pytest.raises(RolloutError, match=rf"partial\.npz: no track for conversation {first}"):
        load_rollouts(partial, conversations)
    nan = tmp_path / "nan.npz"
    broken = dict(tracks)
    broken[conversations[1].conversation_id] = broken[conversations[1].conversation_id].copy()
    broken[conversations[1].conversation_id][3, 4] = np.nan
    save_rollouts(nan, broken, {"data": "here"})
    with pytest.raises(RolloutError, match=rf"nan\.npz: track {conversations[1].conversation_id} .*non-finite"):
        load_rollouts(nan, conversations)
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip at all")
    with pytest.raises(RolloutError, match=r"corrupt\.npz: not a readable rollout file"):
        load_rollouts(corrupt, conversations)
    with pytest.raises(RolloutError, match="may not be called"):
        save_rollouts(tmp_path / "x.npz", {"meta": tracks[conversations[0].conversation_id]}, {})


def test_cli_options():
    cfg = parse_args(["--data", "d", "--out", "o", "--rollouts", "r.npz", "--rollout-share", "0.7"])
    assert cfg.rollouts == "r.npz" and cfg.rollout_share == 0.7
    assert parse_args(["--data", "d", "--out", "o"]).rollouts == ""
