"""Untrained but non-trivial policies for tests, benchmarks and smoke runs.

A freshly initialised network has logits within ~1e-3 of each other (weights of std 0.02), so
parity checks on it would pass even with a broken export. ``make_policy`` rescales the weights so
that logits spread over several nats, as in a trained model, while staying finite.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from face_expr_ros import expression as ex
from face_expr_ros.policy.model_dir import save_policy
from face_expr_ros.policy.network import ListenerPolicy, PolicyConfig
from face_expr_ros.policy.persona import PersonaSpace
from face_expr_ros.policy.tokenizer import ActionTokenizer


def synthetic_actions(n: int = 2000, seed: int = 0) -> np.ndarray:
    """Plausible-looking listener frames: sparse blendshapes, small head angles, tongueOut constant 0."""
    rng = np.random.default_rng(seed)
    acts = np.zeros((n, ex.DIM), np.float32)
    acts[:, ex.BLENDSHAPE_SLICE] = rng.beta(0.6, 3.0, (n, ex.N_BLENDSHAPES))
    acts[:, ex.index("tongueOut")] = 0.0
    acts[:, ex.HEAD_SLICE] = rng.normal(0.0, 0.15, (n, 3))
    return ex.clamp(acts)


def synthetic_personas(dim: int, n_listeners: int = 6, seed: int = 0) -> PersonaSpace:
    """A persona space fitted on listeners of different expressivity (each a gain on synthetic frames)."""
    tracks = [ex.clamp(synthetic_actions(300, seed + k) * (0.3 + 0.3 * k)) for k in range(n_listeners)]
    speakers = [synthetic_actions(300, seed + 100 + k) for k in range(n_listeners)]
    return PersonaSpace.fit(tracks, speakers, dim)


def make_net(cfg: PolicyConfig | None = None, seed: int = 0, weight_scale: float = 6.0) -> ListenerPolicy:
    """A network whose head logits spread like a trained one's (see module doc)."""
    torch.manual_seed(seed)
    net = ListenerPolicy(cfg or PolicyConfig())
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.ndim >= 2 and "pos" not in name:
                p.mul_(weight_scale if name.startswith(("base_", "delta_", "bin_", "code_", "head_")) else 1.0)
            elif (name.endswith("bias") and p.ndim == 2) or name in ("base_bias", "delta_bias"):
                p.normal_(0.0, 1.0)
    return net.eval()


def make_policy(out_dir: str | Path, cfg: PolicyConfig | None = None, seed: int = 0,
                export: bool = True) -> tuple[ListenerPolicy, ActionTokenizer, Path]:
    """Save an untrained, spread-logit policy directory; returns (net, tokenizer, path)."""
    net = make_net(cfg, seed)
    tok = ActionTokenizer.fit(synthetic_actions(seed=seed), horizon=net.cfg.horizon, n_keyframes=net.cfg.n_keyframes,
                              n_bins=net.cfg.n_bins)
    path = save_policy(out_dir, net, tok, synthetic_personas(net.cfg.persona_dim, seed=seed), export=export)
    return net, tok, path
