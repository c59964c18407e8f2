"""Supervised fine-tuning (behaviour cloning) of the listener policy on dataset shards.

Reads top to bottom like nanoGPT's ``train.py``: settings, distributed set-up, data, tokenizer
and text embeddings, model, optimiser, the loop, checkpoints. Runs as one process or under
``torchrun`` with DistributedDataParallel (gloo on CPUs, NCCL on GPUs) with no code change::

    python -m face_expr_ros.learning.sft --data data/synth --out runs/sft
    torchrun --standalone --nproc_per_node 2 -m face_expr_ros.learning.sft --data data/synth --out runs/sft

Loss per window (``network.py`` for the model's factorisation):

* token cross-entropy of the target chunk's tokens under the mixture over the chunk code,
  ``-log sum_z p(z | x) p(tokens | x, z)``, divided by the number of tokens (55 M);
* temporal smoothness, ``lambda * mean_t ||E[a_t] - E[a_{t-1}]||^2`` over consecutive frames of the
  chunk, where ``E[a_t]`` is the expected decoded value (bin centres and steps weighted by their
  probabilities, mixed over ``z``): it discourages plans that jump while staying differentiable.
  Only within the chunk: the frame before it is not an input (the own-action history ends
  ``history_delay`` frames earlier, or is hidden), and pulling the chunk towards an older or a
  zeroed frame would teach the copycat lag (or the neutral face) this delay exists to avoid.

AdamW (Loshchilov & Hutter, 2019) with linear warm-up and cosine decay to ``min_lr``, gradient
clipping, an optional exponential moving average of the weights that becomes the exported
policy (``--ema-decay``, :class:`WeightAverage`), resumable checkpoints (weights as
safetensors, config, tokenizer and the dataset's ``data_hash()`` so a resume on other data is
refused), CSV logs and PNG training curves.
The transcript embedding of every (conversation, words heard) pair is computed once with the
ONNX text encoder and cached on disk; ``--text none`` trains without text (tiny tests).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from face_expr_ros import expression as ex
from face_expr_ros.learning.dataset import WindowDataset
from face_expr_ros.learning.features import audio_frame_features
from face_expr_ros.learning.shards import read_manifest
from face_expr_ros.perception.text_encoder import default_encoder_dir
from face_expr_ros.policy.model_dir import save_policy
from face_expr_ros.policy.network import INPUT_NAMES, ListenerPolicy, PolicyConfig
from face_expr_ros.policy.persona import PersonaSpace
from face_expr_ros.policy.tokenizer import ActionTokenizer

CHECKPOINT = "checkpoint"
EMA_FILE = "ema.safetensors"  # the weight average, in the checkpoint folder
# For every channel, the lower index of its yoked pair (itself if none): one gain per pair.
_YOKED_GAIN_INDEX = torch.from_numpy(np.minimum(np.arange(ex.DIM), ex.yoked_partner()))
POLICY = "policy"


@dataclass
class SFTConfig:
    data: str
    out: str
    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup: int = 100
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    smooth_weight: float = 0.1
    motion_weight: float = 0.0  # weight of the expected-motion matching term (see SFTObjective)
    history_dropout: float = 0.5  # share of training windows whose own-action history is hidden
    history_gain_noise: float = 0.25  # sigma of the log-normal per-channel gain on the own-action history
    pause_emphasis: float = 0.0  # windows in the first 1.5 s of a pause drawn 1 + this as often (WeightedWindows)
    head_step_weight: float = 1.0  # weight of the head channels' step tokens in the likelihood (SFTObjective)
    ema_decay: float = 0.0  # > 0: export the exponential moving average of the weights (WeightAverage)
    rollouts: str = ""  # a `face-expr rollout` file of the training split: the policy's own histories
    rollout_share: float = 0.5  # share of the shown histories taken from the rollouts (with --rollouts)
    stride: int = 4
    text: str = "minilm"  # "minilm" or "none"
    text_encoder_dir: str = str(default_encoder_dir())
    log_every: int = 10
    eval_every: int = 200
    save_every: int = 500
    eval_batches: int = 20
    seed: int = 0
    resume: bool = True
    progress: bool = True
    export_onnx: bool = True
    arch: dict[str, Any] = field(default_factory=dict)  # PolicyConfig overrides


# ----------------------------------------------------------------------------- pieces
def lr_at(step: int, cfg: SFTConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr`` at ``steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


def text_table(ds: WindowDataset, mode: str, encoder_dir: str, cache: Path, data_hash: str,
               is_main: bool) -> tuple[Tensor, Tensor]:
    """Embeddings of every running transcript: (rows, 384) and per-conversation row offsets.

    Row ``offset[c] + n`` embeds the transcript of conversation ``c`` after ``n`` words, as the
    policy sees it at run time (``transcript_text`` of the words up to the last phrase end); row 0
    (nothing heard yet) is the zero vector. Rank 0 computes and
    caches; the other ranks wait at a barrier and read the cache.
    """
    counts = [int(c.arrays["words_heard"].max()) + 1 for c in ds.conversations]
    offsets = torch.tensor(np.concatenate([[0], np.cumsum(counts)[:-1]]), dtype=torch.long)
    if mode == "none":
        return torch.zeros(sum(counts), 384), offsets
    if mode != "minilm":
        raise ValueError(f"--text must be 'minilm' or 'none', got {mode!r}")
    key = f"{data_hash[:16]}-{'-'.join(c.conversation_id for c in ds.conversations)[:64]}"
    if is_main and not cache.is_file():
        from face_expr_ros.perception.text_encoder import TextEncoder, phrase_ends, transcript_text, words_at_phrase_end

        encoder = TextEncoder.ensure(encoder_dir, threads=os.cpu_count() or 1)
        # Row n holds the text as of the last phrase end at or before n words (see phrase_ends):
        # only phrase ends need the network, the rows between repeat them.
        rows, texts = [], []
        for conv, k in zip(ds.conversations, counts):
            ends = [0, *phrase_ends(conv.words)]
            base = len(texts)
            texts += [transcript_text([w for w, _, _ in conv.words[:e]]) for e in ends]
            rows += [base + ends.index(int(q)) for q in words_at_phrase_end(conv.words, np.arange(k))]
        unique = np.concatenate([encoder.embed_batch(texts[i:i + 64]) for i in range(0, len(texts), 64)])
        table = unique[np.array(rows, dtype=np.int64)]
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, table=table, key=np.array(key))
    if dist.is_initialized():
        dist.barrier()
    with np.load(cache) as npz:
        if str(npz["key"]) != key:
            raise ValueError(f"{cache}: text cache was made for other data; delete it")
        return torch.from_numpy(npz["table"]), offsets


class SFTObjective(nn.Module):
    """Wraps the policy so that one ``forward`` (what DDP synchronises) computes the whole loss.

    ``forward`` returns the loss, the exact per-token NLL (unweighted, whatever ``head_step_weight``)
    and the smoothness term.
    """

    def __init__(self, net: ListenerPolicy, tok: ActionTokenizer, smooth_weight: float,
                 motion_weight: float = 0.0, motion_scale: np.ndarray | None = None,
                 head_step_weight: float = 1.0) -> None:
        super().__init__()
        self.net, self.smooth_weight, self.motion_weight = net, smooth_weight, motion_weight
        # A nod is a handful of head step tokens among 275 per chunk: with weight > 1 their
        # direction is worth learning (docs/policy.md, "The weight of the signal"). 1: the exact likelihood.
        step_weight = torch.ones(ex.DIM)
        step_weight[ex.HEAD_SLICE] = head_step_weight
        self.register_buffer("step_weight", step_weight if head_step_weight != 1.0 else None)
        scale = np.ones(ex.DIM, np.float32) if motion_scale is None else np.asarray(motion_scale, np.float32)
        self.register_buffer("motion_scale", torch.from_numpy(scale))  # (55,) spread of a channel's change
        self.n_tokens = ex.DIM * tok.n_keyframes
        self.register_buffer("centers", torch.from_numpy(tok.centers))  # (55, n_bins)
        steps = np.asarray(tok.delta_steps, np.float32)[None, :] * tok.width[:, None]
        self.register_buffer("step_values", torch.from_numpy(steps.astype(np.float32)))  # (55, S)
        self.register_buffer("interp", torch.from_numpy(tok.interpolation))  # (H, M)

    def expected_chunk(self, log_z: Tensor, base_logits: Tensor, delta_logits: Tensor) -> Tensor:
        """The chunk (B, H, 55) the mixture decodes to on average (the tokenizer's decoding is
        linear in the keyframe values, so it is the decoding of the expected keyframes; steps that
        would leave the bin range are not clipped here)."""
        e_base = (F.softmax(base_logits, -1) * self.centers).sum(-1).unsqueeze(2)  # (B, K, 1, 55)
        e_step = (F.softmax(delta_logits, -1) * self.step_values).sum(-1)  # (B, K, M-1, 55)
        keys = torch.cat([e_base, e_base + e_step.cumsum(2)], dim=2)  # (B, K, M, 55)
        frames = self.interp @ keys  # (B, K, H, 55)
        return (log_z.exp()[..., None, None] * frames).sum(1)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        net = self.net
        h, code_logits = net.encode(*(batch[n] for n in INPUT_NAMES))
        base_logits, delta_logits = net.head_all_codes(h)  # (B, K, 55, n_bins), (B, K, M-1, 55, S)
        log_z, lp_base, lp_steps = net.token_log_prob_terms(code_logits, base_logits, delta_logits, batch["base"],
                                                            batch["deltas"])
        nll = -torch.logsumexp(log_z + lp_base + lp_steps.sum(-1), dim=-1).mean() / self.n_tokens
        fit = nll
        if self.step_weight is not None:
            lp_weighted = lp_base + (lp_steps * self.step_weight).sum(-1)
            fit = -torch.logsumexp(log_z + lp_weighted, dim=-1).mean() / self.n_tokens
        expected = self.expected_chunk(log_z, base_logits, delta_logits)
        smooth = (expected[:, 1:] - expected[:, :-1]).pow(2).sum(-1).mean()
        loss = fit + self.smooth_weight * smooth
        if self.motion_weight > 0:
            # The mixture's expected motion within the chunk against the recorded one, per channel
            # in units of the channel's typical change. Its minimiser is the true conditional mean,
            # as the likelihood's is the true distribution, so the two agree at the optimum; but a
            # late nod costs a few hundredths of a nat among 275 tokens of cross-entropy and a
            # large squared error here, a dense signal for the timing the likelihood leaves unlearned
            # (docs/policy.md, "What the network has learned").
            moved = (expected[:, 1:] - expected[:, :1]) - (batch["target"][:, 1:] - batch["target"][:, :1])
            loss = loss + self.motion_weight * (moved / self.motion_scale).pow(2).mean()
        return loss, nll, smooth


class WeightedWindows(Sampler[int]):
    """Window indices drawn with replacement in proportion to ``weights``, a new draw every epoch.

    Each rank draws its own ``num_samples`` from its own seed, so under DDP the ranks see different
    windows as with ``DistributedSampler``; ``set_epoch`` is the same interface.
    """

    def __init__(self, weights: Tensor, num_samples: int, seed: int, rank: int = 0) -> None:
        self.weights, self.num_samples, self.seed, self.rank, self.epoch = weights, num_samples, seed, rank, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Any:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 1009 + self.rank)
        return iter(torch.multinomial(self.weights, self.num_samples, replacement=True, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_samples


class WeightAverage:
    """Exponential moving average of a network's parameters (Polyak & Juditsky, 1992; the EMA of
    weights used by generative models since Karras et al., ICLR 2018, "Progressive Growing of GANs").

    After optimiser step ``k`` (counted from 0), ``avg <- d_k avg + (1 - d_k) w`` with
    ``d_k = min(decay, (1 + k) / (10 + k))``: early on, while the weights move fast, the average
    follows them closely instead of remembering the random initialisation (the warm-up of
    TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``). Buffers (input statistics,
    masks) are not averaged: they are copied from the network when the average is used.
    """

    def __init__(self, net: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.params = {n: p.detach().clone() for n, p in net.named_parameters()}

    def rate(self, step: int) -> float:
        """``d_k`` of the docstring for optimiser step ``step``."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        d = self.rate(step)
        for name, p in net.named_parameters():
            self.params[name].lerp_(p.detach(), 1.0 - d)

    def state_dict(self, net: nn.Module) -> dict[str, Tensor]:
        """``net``'s state with the averaged parameters in place of its own."""
        return {k: self.params.get(k, v).detach().cpu().contiguous() for k, v in net.state_dict().items()}


def make_batch(raw: dict[str, Tensor], tok: ActionTokenizer, texts: Tensor, offsets: Tensor, personas: Tensor,
               device: torch.device, history_dropout: float = 0.0,
               generator: torch.Generator | None = None, history_gain_noise: float = 0.0,
               rollout_share: float = 0.0) -> dict[str, Tensor]:
    """Dataset windows -> network inputs + target tokens.

    ``personas`` (conversations, P) holds each conversation's listener persona (``persona.py``).

    ``history_dropout`` hides the listener's own past actions (zeros) in that share of the
    windows. Without it the network learns to copy its last frame, which is nearly always right
    on recorded data, and at run time, fed its own outputs, it then stays where it started (the
    "copycat" failure of behaviour cloning with action history; Wen et al., NeurIPS 2020).

    ``history_gain_noise`` scales each channel of the shown history by ``exp(sigma * N(0, 1))``
    (one gain per window and channel, shared by yoked partners, ``expression.yoked_partner``)
    while the target stays the recorded continuation. At run time the history is the policy's
    own output, whose amplitude is off by sampling noise; trained on exact histories, the network
    reads a too-large smile as a wide-smiling listener and continues it, and the error feeds back.
    Perturbed histories with unperturbed targets teach it to take the amplitude from the context
    and pull back towards it: noise injection into the demonstrations' state, as in DART
    (Laskey et al., CoRL 2017), applied to the part of the state the policy produces itself.

    ``rollout_share``: of the windows whose history is shown, this share shows the policy's own
    history over the same frames (``raw["rollout_past"]``, ``rollouts.py``) instead of the
    recorded one, with the recorded continuation as the target (DAgger-style; see ``rollouts.py``).
    """
    base, deltas = tok.encode_chunk(raw["target"].numpy())
    batch = {k: raw[k] for k in ("speaker", "face_present", "audio", "silence", "listener_past")}
    if rollout_share > 0:
        if "rollout_past" not in raw:
            raise ValueError("rollout_share > 0 needs windows with 'rollout_past' (WindowDataset.attach_rollouts)")
        own = torch.rand(len(raw["listener_past"]), generator=generator) < rollout_share
        batch["listener_past"] = torch.where(own[:, None, None], raw["rollout_past"], raw["listener_past"])
    if history_dropout > 0:
        hide = torch.rand(len(raw["listener_past"]), generator=generator) < history_dropout
        batch["listener_past"] = torch.where(hide[:, None, None], torch.zeros_like(raw["listener_past"]),
                                             batch["listener_past"])
    if history_gain_noise > 0:
        gain = torch.exp(history_gain_noise * torch.randn(len(raw["listener_past"]), ex.DIM, generator=generator))
        gain = gain[:, _YOKED_GAIN_INDEX]
        batch["listener_past"] = batch["listener_past"] * gain[:, None, :]
    batch["text"] = texts[offsets[raw["conversation"]] + raw["words_heard"]]
    batch["persona"] = personas[raw["conversation"]]
    batch["base"], batch["deltas"] = torch.from_numpy(base), torch.from_numpy(deltas)
    batch["target"] = raw["target"]
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def plot_curves(csv_path: Path, png_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for ax, key in zip(axes, ("nll", "smooth", "lr")):
        for split in ("train", "val"):
            pts = [(int(r["step"]), float(r[key])) for r in rows if r["split"] == split and r[key] != ""]
            if pts:
                ax.plot(*zip(*pts), label=split, marker="." if split == "val" else None)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.legend()
    axes[0].set_ylabel("per-token negative log-likelihood (nats)")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- training
def window_sampler(cfg: SFTConfig, train_ds: WindowDataset, world: int, rank: int) -> Sampler[int] | None:
    """How this rank draws training windows: weighted towards pauses (``pause_emphasis``), its
    share of a shuffle under DDP, or None (the loader shuffles)."""
    if cfg.pause_emphasis > 0:
        weights = torch.from_numpy(train_ds.pause_weights(cfg.pause_emphasis))
        return WeightedWindows(weights, len(train_ds) // world, cfg.seed, rank)
    if world > 1:
        return DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    return None


def train(cfg: SFTConfig) -> Path:
    """Train; returns the path of the exported policy directory.

    Subnormal floats are flushed to zero while it runs: as the weights settle, many gradients
    fall below 1e-38, which x86 cores compute in microcode. Measured here, a step took 0.57 s at
    the start and 1.25 s after 900 steps (the backward pass 0.60 s against 0.29 s flushed).
    """
    # numpy caches its float limits first: computed after the switch, they warn that subnormals are 0.
    np.finfo(np.float32), np.finfo(np.float64)
    torch.set_flush_denormal(True)
    try:
        return _train(cfg)
    finally:
        torch.set_flush_denormal(False)


def _train(cfg: SFTConfig) -> Path:
    # Distributed set-up: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; alone we are rank 0 of 1.
    ddp = "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    if ddp:
        use_cuda = torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(device)
    else:
        rank, world = 0, 1
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    is_main = rank == 0
    torch.manual_seed(cfg.seed + rank)
    np.random.seed(cfg.seed + rank)
    out = Path(cfg.out)
    if is_main:
        out.mkdir(parents=True, exist_ok=True)

    # Data, tokenizer and input statistics (every rank computes the same, deterministically).
    arch = PolicyConfig(**cfg.arch)
    manifest = read_manifest(cfg.data)
    data_hash = manifest.data_hash()
    windows = {"window": arch.window, "horizon": arch.horizon, "stride": cfg.stride,
               "history_delay": arch.history_delay}
    train_ds = WindowDataset(cfg.data, "train", **windows)
    val_ds = WindowDataset(cfg.data, "val", **windows) if manifest.ids("val") else None
    listeners = [c.arrays["listener_expression"] for c in train_ds.conversations]
    actions = np.concatenate(listeners)
    tok = ActionTokenizer.fit(actions, horizon=arch.horizon, n_keyframes=arch.n_keyframes, n_bins=arch.n_bins)
    persona_space = PersonaSpace.fit(listeners, [c.arrays["speaker_expression"] for c in train_ds.conversations],
                                     arch.persona_dim)
    personas = torch.from_numpy(persona_space.bank)
    val_personas = torch.from_numpy(np.stack([
        persona_space.embed(c.arrays["listener_expression"], c.arrays["speaker_expression"])
        for c in val_ds.conversations])) if val_ds is not None else None
    audio = np.concatenate([audio_frame_features(c) for c in train_ds.conversations])
    arch = PolicyConfig(**{**arch.to_dict(), "audio_dim": audio.shape[1]})
    texts, offsets = text_table(train_ds, cfg.text, cfg.text_encoder_dir, out / "text_cache_train.npz", data_hash,
                                is_main)
    if cfg.rollouts:
        from face_expr_ros.learning.rollouts import load_rollouts, shard_fingerprints

        if not 0.0 <= cfg.rollout_share <= 1.0:
            raise ValueError(f"--rollout-share must be in [0, 1], got {cfg.rollout_share}")
        train_ds.attach_rollouts(load_rollouts(cfg.rollouts, train_ds.conversations,
                                               shard_fingerprints(manifest, "train")))
    if val_ds is not None:
        val_texts, val_offsets = text_table(val_ds, cfg.text, cfg.text_encoder_dir, out / "text_cache_val.npz",
                                            data_hash, is_main)

    # Model and optimiser: decay matrices only (not biases, norms, embeddings of bins/positions).
    net = ListenerPolicy(arch)
    net.audio_mean.copy_(torch.from_numpy(audio.mean(0)))
    net.audio_std.copy_(torch.from_numpy(np.maximum(audio.std(0), 1e-3)))
    half_chunk = arch.horizon // 2  # the typical change of a channel over half a chunk, floored
    motion_scale = np.maximum(np.std(actions[half_chunk:] - actions[:-half_chunk], axis=0), 1e-3)
    objective = SFTObjective(net, tok, cfg.smooth_weight, cfg.motion_weight, motion_scale,
                             cfg.head_step_weight).to(device)
    decay = [p for n, p in net.named_parameters() if p.ndim >= 2 and n not in ("pos",)]
    no_decay = [p for n, p in net.named_parameters() if not (p.ndim >= 2 and n not in ("pos",))]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))

    average = WeightAverage(net, cfg.ema_decay) if cfg.ema_decay > 0 else None

    # Resume: the checkpoint must come from the same data and the same tokenizer.
    start = 0
    ckpt = out / CHECKPOINT
    if cfg.resume and (ckpt / "state.json").is_file():
        from safetensors.torch import load_file

        state = json.loads((ckpt / "state.json").read_text())
        if state["data_hash"] != data_hash:
            raise ValueError(f"{ckpt / 'state.json'}: field 'data_hash' is {state['data_hash'][:12]}..., the data "
                             f"in {cfg.data} is {data_hash[:12]}...; use a new --out or --no-resume")
        saved_tok = ActionTokenizer.load(ckpt / "tokenizer.json")
        if saved_tok.sha256 != tok.sha256:
            raise ValueError(f"{ckpt / 'tokenizer.json'}: differs from the tokenizer fitted on {cfg.data}")
        net.load_state_dict(load_file(str(ckpt / "model.safetensors")))
        optim.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location=device, weights_only=True))
        start = int(state["step"])
        if average is not None:
            if not (ckpt / EMA_FILE).is_file():
                raise ValueError(f"{ckpt / EMA_FILE}: missing; the run was started without --ema-decay")
            average.params.update(load_file(str(ckpt / EMA_FILE), device=str(device)))
    model: nn.Module = DistributedDataParallel(objective) if ddp else objective

    sampler = window_sampler(cfg, train_ds, world, rank)
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        drop_last=len(train_ds) >= cfg.batch_size * world, num_workers=0)

    def batches() -> Any:
        epoch = 0
        while True:
            if sampler is not None:
                sampler.set_epoch(epoch)  # type: ignore[attr-defined]
            yield from loader
            epoch += 1

    def save_checkpoint(step: int) -> None:
        from safetensors.torch import save_file

        ckpt.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
                  str(ckpt / "model.safetensors"))
        torch.save(optim.state_dict(), ckpt / "optimizer.pt")
        if average is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in average.params.items()}, str(ckpt / EMA_FILE))
        tok.save(ckpt / "tokenizer.json")
        (ckpt / "config.json").write_text(json.dumps(arch.to_dict(), indent=1) + "\n")
        (ckpt / "state.json").write_text(json.dumps({"step": step, "data_hash": data_hash,
                                                     "tokenizer_sha256": tok.sha256, "world_size": world,
                                                     "distributed_backend": dist.get_backend() if ddp else None,
                                                     "sft": asdict(cfg)}, indent=1))

    @torch.no_grad()
    def evaluate() -> tuple[float, float]:
        objective.eval()
        nlls, smooths = [], []
        vl = DataLoader(val_ds, batch_size=cfg.batch_size, shuffle=False)
        for i, raw in enumerate(vl):
            if i >= cfg.eval_batches:
                break
            _, nll, smooth = objective(make_batch(raw, tok, val_texts, val_offsets, val_personas, device))
            nlls.append(nll.item())
            smooths.append(smooth.item())
        objective.train()
        return float(np.mean(nlls)), float(np.mean(smooths))

    # The loop.
    log_path = out / "log.csv"
    if is_main and (start == 0 or not log_path.is_file()):
        with open(log_path, "w", newline="") as fh:
            csv.writer(fh).writerow(["step", "split", "loss", "nll", "smooth", "lr", "seconds"])
    progress = None
    if is_main and cfg.progress:
        from tqdm import tqdm

        progress = tqdm(total=cfg.steps, initial=start, desc="sft", unit="step")
    stream = batches()
    dropout_rng = torch.Generator().manual_seed(cfg.seed + 1000 + rank)
    t0 = time.time()
    for step in range(start, cfg.steps):
        lr = lr_at(step, cfg)
        for group in optim.param_groups:
            group["lr"] = lr
        batch = make_batch(next(stream), tok, texts, offsets, personas, device, cfg.history_dropout, dropout_rng,
                           cfg.history_gain_noise, cfg.rollout_share if cfg.rollouts else 0.0)
        loss, nll, smooth = model(batch)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        optim.step()
        if average is not None:
            average.update(net, step)
        done = step + 1
        if is_main and (done % cfg.log_every == 0 or done == cfg.steps):
            with open(log_path, "a", newline="") as fh:
                csv.writer(fh).writerow([done, "train", f"{loss.item():.5f}", f"{nll.item():.5f}",
                                         f"{smooth.item():.6f}", f"{lr:.3e}", f"{time.time() - t0:.1f}"])
            if progress is not None:
                progress.set_postfix(nll=f"{nll.item():.3f}", lr=f"{lr:.1e}")
        if is_main and val_ds is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
            v_nll, v_smooth = evaluate()
            with open(log_path, "a", newline="") as fh:
                csv.writer(fh).writerow([done, "val", "", f"{v_nll:.5f}", f"{v_smooth:.6f}", "",
                                         f"{time.time() - t0:.1f}"])
        if is_main and (done % cfg.save_every == 0 or done == cfg.steps):
            save_checkpoint(done)
            plot_curves(log_path, out / "curves.png")
        if progress is not None:
            progress.update(1)
    if progress is not None:
        progress.close()

    policy_dir = out / POLICY
    if is_main:
        if average is not None:
            net.load_state_dict(average.state_dict(net))
        save_policy(policy_dir, net.cpu().eval(), tok, persona_space, export=cfg.export_onnx,
                    extra={"data_hash": data_hash, "trained_on": manifest.fingerprints("train"),
                           "trained_steps": cfg.steps, "text": cfg.text,
                           "sft": {k: v for k, v in asdict(cfg).items() if k != "arch"}})
    if ddp:
        dist.barrier()
        dist.destroy_process_group()
    return policy_dir


_INT_OPTIONS = ("steps", "batch_size", "warmup", "log_every", "eval_every", "save_every", "eval_batches", "seed",
                "stride")
_FLOAT_OPTIONS = ("lr", "min_lr", "weight_decay", "grad_clip", "smooth_weight", "motion_weight", "history_dropout",
                  "history_gain_noise", "pause_emphasis", "head_step_weight", "ema_decay", "rollout_share")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The training options (shared by ``python -m ...sft`` and ``face-expr train``)."""
    p.add_argument("--data", required=True, help="dataset folder (manifest.json + shards)")
    p.add_argument("--out", required=True, help="run folder: checkpoint/, policy/, log.csv, curves.png")
    defaults = SFTConfig("", "")
    for name in _INT_OPTIONS:
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name),
                       help=f"(default {getattr(defaults, name)})")
    for name in _FLOAT_OPTIONS:
        p.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name),
                       help=f"(default {getattr(defaults, name)})")
    p.add_argument("--text", choices=("minilm", "none"), default=defaults.text,
                   help="transcript embeddings: MiniLM, or none (tiny tests)")
    p.add_argument("--text-encoder-dir", default=defaults.text_encoder_dir,
                   help="where the ONNX MiniLM lives (exported there on first use)")
    p.add_argument("--rollouts", default=defaults.rollouts,
                   help="a `face-expr rollout` file of the training split: show the policy's own history in "
                        "--rollout-share of the windows whose history is shown (default: none)")
    p.add_argument("--arch", default="{}", help='PolicyConfig overrides as JSON, e.g. \'{"d_model": 64}\'')
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a checkpoint exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-onnx", action="store_true", help="skip the ONNX export of the final policy")


def config_from_args(a: argparse.Namespace) -> SFTConfig:
    names = ("data", "out", "text", "text_encoder_dir", "rollouts", *_INT_OPTIONS, *_FLOAT_OPTIONS)
    return SFTConfig(**{n: getattr(a, n) for n in names}, resume=not a.no_resume, progress=not a.no_progress,
                     export_onnx=not a.no_onnx, arch=json.loads(a.arch))


def parse_args(argv: list[str] | None = None) -> SFTConfig:
    p = argparse.ArgumentParser(description="Supervised fine-tuning of the listener policy.")
    add_arguments(p)
    return config_from_args(p.parse_args(argv))


if __name__ == "__main__":
    train(parse_args())
