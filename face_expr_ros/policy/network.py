"""The listener policy network (PyTorch reference): encoders, causal transformer, factorised head.

Inputs (``B`` = batch, the only dynamic dimension; ``W`` = window frames):

* ``speaker`` (B, W, 55) the speaker's expression and head pose, ``face_present`` (B, W) in {0, 1};
* ``audio`` (B, W, A) log-mel + energy/pitch/voicing/VAD (``features.audio_frame_features``);
* ``silence`` (B, W) seconds since the speaker's voice was last heard (VAD;
  ``features.seconds_of_silence``), ``text`` (B, 384) the MiniLM sentence embedding of the running
  transcript (zeros when there is none);
* ``listener_past`` (B, W, 55) the listener's own outputs ``1 + history_delay`` frames behind the
  speaker rows;
* ``persona`` (B, P) who the listener is, held for the whole conversation (``persona.py``).

Each modality has its own small encoder; their per-frame sum (plus a learned position and the
text and persona projections, broadcast over frames) is a token, and a pre-LN causal transformer (Vaswani et
al., 2017; GPT-2 layout) reads the ``W`` tokens. The last position's state ``h`` conditions the
action head, which is split in two graphs so that sampling stays outside (numpy, seeded):

1. ``encode`` -> ``h`` (B, D) and ``code_logits`` (B, K): a discrete chunk latent ``z`` ("which
   kind of reaction": nod, smile, blink, hold...) that is sampled first;
2. ``head(h, z)`` -> ``base_logits`` (B, 55, 256) and ``delta_logits`` (B, M-1, 55, S): the
   tokens of ``ActionTokenizer`` (base bin + keyframe steps), all conditioned on ``z``.

The policy is thus a mixture of K factorised token distributions,
``p(a | x) = sum_z p(z | x) prod_i p(base_i | x, z) prod_{m,i} p(delta_{m,i} | x, z)``,
and every log-probability (joint with ``z`` or marginal over it) is exact.

The head is factorised (trap 2 of the design brief): a naive ``D -> 55 x 256`` linear layer
per keyframe is millions of weights. Here each dimension gets a query vector
``q_i = (W_q g)_i`` of size ``E`` (32) and the logits are dot products with *shared* bin
embeddings, ``logit_{i,b} = q_i . e_b + c_{i,b}``, where ``e_b`` is a learned linear map of fixed
Fourier features of the bin position (so neighbouring bins start with similar logits and the
distribution is smooth) and ``c_{i,b}`` a per-dimension bias (the marginal). The same holds for
the step tokens with their own embeddings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from face_expr_ros import expression as ex

INPUT_NAMES: tuple[str, ...] = ("speaker", "face_present", "audio", "silence", "text", "listener_past",
                                "persona")


@dataclass(frozen=True)
class PolicyConfig:
    """Architecture and feature sizes; stored as ``config.json['architecture']``."""

    window: int = 32
    horizon: int = 8
    n_keyframes: int = 5
    n_bins: int = 256
    n_deltas: int = 33
    audio_dim: int = 44  # n_mels (40) + energy, pitch, voiced, vad
    text_dim: int = 384
    d_model: int = 96
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 192
    n_codes: int = 16
    query_dim: int = 32
    n_fourier: int = 16
    persona_dim: int = 8
    dropout: float = 0.0
    # The own-action history ends this many frames before the current one (see learning/dataset.py).
    history_delay: int = 8

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "dropout":
                if not 0.0 <= value < 1.0:
                    raise ValueError(f"config field 'dropout' must be in [0, 1), got {value}")
            elif f.name == "history_delay":
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"config field 'history_delay' must be an integer >= 0, got {value!r}")
            elif not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"config field {f.name!r} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"config field 'd_model' ({self.d_model}) must be divisible by 'n_heads' ({self.n_heads})")
        if not 2 <= self.n_keyframes <= self.horizon:
            raise ValueError(f"config field 'n_keyframes' must be in 2..horizon ({self.horizon}), "
                             f"got {self.n_keyframes}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> PolicyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(payload) - known)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}")
        if "persona_dim" not in payload:
            raise ValueError("no field 'persona_dim': the model predates personas (docs/policy.md); retrain it")
        # Models saved before the field existed saw their history up to the previous frame.
        return cls(**{"history_delay": 0, **payload})

    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of every network input (the batch axis is not included)."""
        w = self.window
        return {"speaker": (w, ex.DIM), "face_present": (w,), "audio": (w, self.audio_dim),
                "silence": (w,), "text": (self.text_dim,), "listener_past": (w, ex.DIM),
                "persona": (self.persona_dim,)}


def _mlp(d_in: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, d_out), nn.GELU(), nn.Linear(d_out, d_out))


def _fourier(n: int, n_freq: int) -> Tensor:
    """(n, 2 n_freq + 1) features of positions in [0, 1]: 1, sin/cos(pi k x) for k = 1..n_freq."""
    x = torch.linspace(0.0, 1.0, n)[:, None]
    k = torch.arange(1, n_freq + 1, dtype=torch.float32)[None, :]
    return torch.cat([torch.ones(n, 1), torch.sin(math.pi * k * x), torch.cos(math.pi * k * x)], dim=1)


class CausalBlock(nn.Module):
    """Pre-LN transformer block with a fixed causal mask (static shapes for ONNX / TensorRT)."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.n_heads, self.d_head = cfg.n_heads, cfg.d_model // cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)
        mask = torch.full((cfg.window, cfg.window), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor, last_only: bool = False) -> Tensor:
        b, w, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        mask = self.mask
        if last_only:
            # Only the last position feeds the head: in the final block the other queries (and
            # their feed-forward) would be computed and thrown away.
            q, x, mask = q[:, -1:], x[:, -1:], mask[-1:]
        q = q.reshape(b, q.shape[1], self.n_heads, self.d_head).transpose(1, 2)
        k = k.reshape(b, w, self.n_heads, self.d_head).transpose(1, 2)
        v = v.reshape(b, w, self.n_heads, self.d_head).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-2, -1) * (self.d_head ** -0.5) + mask, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, q.shape[2], d)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.ff(self.ln2(x)))


class ListenerPolicy(nn.Module):
    """Encoders + causal transformer + code head (``encode``) and factorised token head (``head``)."""

    def __init__(self, cfg: PolicyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.vision = _mlp(ex.DIM + 1, d)
        self.audio = _mlp(cfg.audio_dim, d)
        self.pause = nn.Linear(3, d)
        self.text = _mlp(cfg.text_dim, d)
        self.actions = _mlp(ex.DIM, d)
        self.persona = _mlp(cfg.persona_dim, d)
        self.pos = nn.Parameter(torch.zeros(cfg.window, d))
        self.blocks = nn.ModuleList(CausalBlock(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.code_logits = nn.Linear(d, cfg.n_codes)
        # Audio features are log energies (about -23 for silence up to ~+10): normalised with
        # statistics of the training data, kept as buffers so every back-end sees the same graph.
        self.register_buffer("audio_mean", torch.zeros(cfg.audio_dim))
        self.register_buffer("audio_std", torch.ones(cfg.audio_dim))
        # Head.
        e, n_steps = cfg.query_dim, cfg.n_keyframes - 1
        self.code_emb = nn.Embedding(cfg.n_codes, d)
        self.head_mlp = _mlp(d, d)
        self.base_query = nn.Linear(d, ex.DIM * e)
        self.delta_query = nn.Linear(d, n_steps * ex.DIM * e)
        self.register_buffer("bin_features", _fourier(cfg.n_bins, cfg.n_fourier), persistent=False)
        self.register_buffer("delta_features", _fourier(cfg.n_deltas, cfg.n_fourier), persistent=False)
        self.bin_embed = nn.Linear(2 * cfg.n_fourier + 1, e, bias=False)
        self.delta_embed = nn.Linear(2 * cfg.n_fourier + 1, e, bias=False)
        self.base_bias = nn.Parameter(torch.zeros(ex.DIM, cfg.n_bins))
        self.delta_bias = nn.Parameter(torch.zeros(n_steps, ex.DIM, cfg.n_deltas))
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    # ---------------------------------------------------------------- graph 1
    def encode(self, speaker: Tensor, face_present: Tensor, audio: Tensor, silence: Tensor, text: Tensor,
               listener_past: Tensor, persona: Tensor) -> tuple[Tensor, Tensor]:
        """Context -> (h (B, D), code_logits (B, K))."""
        fp = face_present.unsqueeze(-1)
        # No face: the speaker frame is zeroed (whatever the tracker last held) and the flag says so.
        vision = self.vision(torch.cat([speaker * fp, fp], dim=-1))
        aud = self.audio((audio - self.audio_mean) / self.audio_std)
        s = silence.unsqueeze(-1)
        # Pause timing at three scales: just now (~0.3 s, backchannels), a turn (~2 s), long silence.
        pause = self.pause(torch.cat([torch.exp(-s / 0.3), torch.exp(-s / 2.0), s / 30.0], dim=-1))
        context = self.text(text) + self.persona(persona)  # (B, D): the same for every frame
        x = vision + aud + pause + self.actions(listener_past) + context.unsqueeze(1) + self.pos
        for i, block in enumerate(self.blocks):
            x = block(x, last_only=i == len(self.blocks) - 1)
        h = self.ln_f(x[:, -1])
        return h, self.code_logits(h)

    # ---------------------------------------------------------------- graph 2
    def head_from_embedding(self, h: Tensor, code_vec: Tensor) -> tuple[Tensor, Tensor]:
        """h (..., D) + code embedding (..., D) -> base (..., 55, n_bins), delta (..., M-1, 55, S) logits."""
        g = self.head_mlp(h + code_vec)
        lead = g.shape[:-1]
        e = self.cfg.query_dim
        qb = self.base_query(g).reshape(*lead, ex.DIM, e)
        qd = self.delta_query(g).reshape(*lead, self.cfg.n_keyframes - 1, ex.DIM, e)
        base = qb @ self.bin_embed(self.bin_features).T + self.base_bias
        delta = qd @ self.delta_embed(self.delta_features).T + self.delta_bias
        return base, delta

    def head(self, h: Tensor, code: Tensor) -> tuple[Tensor, Tensor]:
        """h (B, D), sampled code (B,) int64 -> (base_logits, delta_logits)."""
        return self.head_from_embedding(h, self.code_emb(code))

    def head_all_codes(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """Head logits for every code at once: (B, K, 55, n_bins), (B, K, M-1, 55, S)."""
        return self.head_from_embedding(h.unsqueeze(1), self.code_emb.weight.unsqueeze(0))

    def forward(self, speaker: Tensor, face_present: Tensor, audio: Tensor, silence: Tensor, text: Tensor,
                listener_past: Tensor, persona: Tensor) -> tuple[Tensor, Tensor]:
        return self.encode(speaker, face_present, audio, silence, text, listener_past, persona)

    # ---------------------------------------------------------------- probabilities
    def token_log_prob_terms(self, code_logits: Tensor, base_logits: Tensor, delta_logits: Tensor, base: Tensor,
                             deltas: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The parts of :meth:`token_log_probs`: ``log p(z | x)`` (B, K), the base tokens' log-prob
        (B, K) and each channel's step tokens' log-prob (B, K, 55), so that training can weight
        channels (``sft.SFTObjective``) without a second pass over the logits."""
        log_z = F.log_softmax(code_logits, dim=-1)
        k = code_logits.shape[-1]
        b_idx = base.unsqueeze(1).expand(-1, k, -1).unsqueeze(-1)
        lp_base = F.log_softmax(base_logits, dim=-1).gather(-1, b_idx).squeeze(-1).sum(-1)
        d_idx = deltas.unsqueeze(1).expand(-1, k, -1, -1).unsqueeze(-1)
        lp_steps = F.log_softmax(delta_logits, dim=-1).gather(-1, d_idx).squeeze(-1).sum(-2)  # (B, K, 55)
        return log_z, lp_base, lp_steps

    def token_log_probs(self, code_logits: Tensor, base_logits: Tensor, delta_logits: Tensor, base: Tensor,
                        deltas: Tensor) -> tuple[Tensor, Tensor]:
        """Per-code log-probabilities of given tokens, from all-code head logits.

        Returns ``log p(z | x)`` (B, K) and ``log p(tokens | x, z)`` (B, K). The joint log-prob
        of a sample is their sum at its ``z``; the marginal is ``logsumexp`` over ``z``.
        """
        log_z, lp_base, lp_steps = self.token_log_prob_terms(code_logits, base_logits, delta_logits, base, deltas)
        return log_z, lp_base + lp_steps.sum(-1)

    def log_prob(self, inputs: dict[str, Tensor], base: Tensor, deltas: Tensor, code: Tensor | None = None) -> Tensor:
        """Exact log-probability (B,) of token chunks: marginal over ``z``, or joint with ``code``.

        This is what DPO (Rafailov et al., 2023) and policy-gradient RL need: ``log pi(a | x)``
        of the model at temperature 1 without top-p truncation.
        """
        h, code_logits = self.encode(*(inputs[n] for n in INPUT_NAMES))
        base_logits, delta_logits = self.head_all_codes(h)
        log_z, lp_tokens = self.token_log_probs(code_logits, base_logits, delta_logits, base, deltas)
        if code is None:
            return torch.logsumexp(log_z + lp_tokens, dim=-1)
        return (log_z + lp_tokens).gather(-1, code.view(-1, 1)).squeeze(-1)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def flops_per_plan(cfg: PolicyConfig) -> dict[str, int]:
    """Multiply-accumulates x 2 of one plan (encode + head for one code), counted by hand.

    Only matrix products are counted (activations, norms and softmax are a few per cent).
    """
    w, d, e, ff = cfg.window, cfg.d_model, cfg.query_dim, cfg.d_ff
    nf = 2 * cfg.n_fourier + 1
    enc_in = w * ((ex.DIM + 1) * d + d * d + cfg.audio_dim * d + d * d + 3 * d + ex.DIM * d + d * d)
    enc_in += cfg.text_dim * d + d * d + cfg.persona_dim * d + d * d  # per plan, not per frame
    per_full_block = w * (3 * d * d + d * d + 2 * d * ff) + 2 * w * w * d
    last_block = w * 2 * d * d + (d * d + d * d + 2 * d * ff) + 2 * w * d
    transformer = (cfg.n_layers - 1) * per_full_block + last_block
    code = d * cfg.n_codes
    steps = cfg.n_keyframes - 1
    head = 2 * d * d + d * ex.DIM * e + d * steps * ex.DIM * e
    head += cfg.n_bins * nf * e + cfg.n_deltas * nf * e + ex.DIM * e * cfg.n_bins + steps * ex.DIM * e * cfg.n_deltas
    macs = {"encoders": enc_in, "transformer": transformer, "code": code, "head": head}
    out = {k: 2 * v for k, v in macs.items()}
    out["total"] = sum(out.values())
    return out
