#!/usr/bin/env python3
"""What has the policy learned? Open-loop probes on recorded windows, no sampling, no runtime.

Closed-loop scores (``face-expr eval``) say *that* a policy falls short; these probes say *where*.
Both read the network on recorded windows of a split (inputs and own-action history as in
training, ``learning/dataset.py``):

1. **Nats over the marginal**, per channel group and token kind: the mean log-probability the
   model gives each recorded token (per token, the mixture over codes, ``sum_z p(z|x) p(tok|x,z)``)
   minus the log-probability of the token's frequency in the *training* split. 0 means the
   network has learned nothing about that token from the context; the model's total per-token
   NLL hides this, because the level of a channel (base token) and its motion within the chunk
   (step tokens) differ by an order of magnitude in difficulty.
2. **Nod timing**: the expected head-pitch change over the first half of the chunk (keyframe 0
   to frame 4; > 0 = chin going down) against the time since the last backchannel-relevant
   pause began, for the recorded listeners and for the model's expectation. The data's
   listeners nod 0.15-0.5 s after such a pause starts; a policy that has learned this shows the
   same bump.
3. **Nod phase**: in the same windows, the share of big head-pitch steps (at least 4 bins, up or
   down, in the first two steps of the chunk) that the recorded listeners take and that the model
   gives, and the model's share with the silence clock set to "speaking" (0) and to "long
   silence" (30 s). A model that knows a nod is due but not which way the head is going gives
   big rising and falling steps alike, and its expected change cancels.
4. **Step symmetry**: how much of the network's step logits can depend on the direction of a
   step at all. The step logits are ``q . e_s + c_s`` with ``e_s`` a learned map of Fourier
   features of the step's position; the part of ``e`` that is odd in the step (``e_s - e_-s``) is
   all that lets the context choose rising over falling (the bias ``c`` is the same in every
   context). Printed: the norms of the even and odd parts of the step embedding, and
   how far the odd part of the first head-pitch step's logits moves from window to window.

    .venv/bin/python benchmarks/probe_policy.py --model-dir models/policy --data data/synth --split val

Prints four tables and writes ``benchmarks/results/policy_probe.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from face_expr_ros import expression as ex
from face_expr_ros.eval.baselines import timeline_of
from face_expr_ros.learning.dataset import WindowDataset
from face_expr_ros.learning.features import MAX_SILENCE_S
from face_expr_ros.learning.sft import make_batch, text_table
from face_expr_ros.learning.shards import read_manifest
from face_expr_ros.perception.text_encoder import default_encoder_dir
from face_expr_ros.policy.model_dir import load_policy
from face_expr_ros.policy.network import INPUT_NAMES
from face_expr_ros.policy.tokenizer import ActionTokenizer

GROUPS: dict[str, tuple[str, ...]] = {
    "eyelids": ("eyeBlink",),
    "gaze": ("eyeLook",),
    "eyes other": ("eyeSquint", "eyeWide"),
    "brows": ("brow",),
    "mouth/cheeks": ("mouth", "cheek", "nose", "tongue"),
    "jaw": ("jaw",),
    "head": ("head",),
}
LAG_EDGES_S = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 3.0, float("inf"))
BIG_STEP_BINS = 4


def group_of(name: str) -> str:
    return next(g for g, prefixes in GROUPS.items() if name.startswith(prefixes))


def token_counts(ds: WindowDataset, tok: ActionTokenizer, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per channel, how often each base bin and each step occurs in the windows of ``ds``."""
    n_steps = len(tok.delta_steps)
    base_counts = np.zeros((ex.DIM, tok.n_bins))
    step_counts = np.zeros((ex.DIM, n_steps))
    for start in range(0, len(ds), batch_size):
        targets = np.stack([ds[k]["target"].numpy() for k in range(start, min(len(ds), start + batch_size))])
        base, deltas = tok.encode_chunk(targets)
        for i in range(ex.DIM):
            base_counts[i] += np.bincount(base[:, i], minlength=tok.n_bins)
            step_counts[i] += np.bincount(deltas[:, :, i].ravel(), minlength=n_steps)
    return base_counts, step_counts


@dataclass
class Probed:
    """What the probes read from the network over the chosen windows (one row per window)."""

    gained_base: np.ndarray  # (N, 55) nats of the recorded base token over its training frequency
    gained_step: np.ndarray  # (N, 55) the same for the step tokens (mean over the steps)
    lags: np.ndarray  # (N,) seconds since the last backchannel pause began
    rise_data: np.ndarray  # (N,) recorded head-pitch change to frame 4 (rad)
    rise_model: np.ndarray  # (N,) the model's expected change (rad)
    shares: dict[str, np.ndarray]  # (N, 2) big rising / falling pitch-step share: recorded, model, clock settings
    pitch_odd: np.ndarray  # (N, S) odd part of the first pitch step's logits, mixed over codes


def big_step_shares(code_logits: torch.Tensor, delta_logits: torch.Tensor, pitch: int,
                    big_up: torch.Tensor, big_down: torch.Tensor) -> np.ndarray:
    """Per window, the model's probability of a big rising / falling pitch step (first two steps)."""
    p_steps = F.softmax(delta_logits[:, :, :2, pitch], -1)  # (B, K, 2, S)
    mixed = (F.softmax(code_logits, -1)[..., None, None] * p_steps).sum(1)  # (B, 2, S)
    return torch.stack([mixed[..., big_up].sum(-1), mixed[..., big_down].sum(-1)], -1).mean(1).numpy()


def probe_windows(args: argparse.Namespace, bundle: Any) -> Probed:
    """Run the network over ``args.windows`` recorded windows of ``args.split`` (open loop)."""
    net, tok, cfg = bundle.net.eval(), bundle.tokenizer, bundle.config
    windows = {"window": cfg.window, "horizon": cfg.horizon, "history_delay": cfg.history_delay}
    # Frequencies from the training split (smoothed by one count): the no-context reference.
    base_counts, step_counts = token_counts(WindowDataset(args.data, "train", stride=8, **windows), tok)
    log_base_marginal = np.log((base_counts + 1) / (base_counts + 1).sum(1, keepdims=True))
    log_step_marginal = np.log((step_counts + 1) / (step_counts + 1).sum(1, keepdims=True))

    ds = WindowDataset(args.data, args.split, stride=2, **windows)
    text_mode = bundle.meta.get("text", "minilm")
    texts, offsets = text_table(ds, text_mode, str(default_encoder_dir()), args.cache / f"text_{args.split}.npz",
                                read_manifest(args.data).data_hash(), True)
    # Open loop on recorded windows: each window as its recorded listener's persona.
    personas = torch.from_numpy(np.stack([bundle.persona.embed(c.arrays["listener_expression"],
                                                               c.arrays["speaker_expression"])
                                          for c in ds.conversations]))
    pause_starts = [np.array([p.start for p in timeline_of(c).backchannel_places(0.3)]) for c in ds.conversations]
    chosen = np.random.default_rng(0).choice(len(ds), size=min(args.windows, len(ds)), replace=False)
    pitch = ex.index("headPitch")
    step_values = torch.tensor(np.asarray(tok.delta_steps, np.float32) * tok.width[pitch])
    steps = np.asarray(tok.delta_steps)
    big_up, big_down = torch.from_numpy(steps >= BIG_STEP_BINS), torch.from_numpy(steps <= -BIG_STEP_BINS)
    clock_settings = {"as recorded": None, "clock 0": 0.0, "clock 30 s": MAX_SILENCE_S}
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("gained_base", "gained_step", "rise_data", "rise_model",
                                                          "pitch_odd")}
    shares: dict[str, list[np.ndarray]] = {k: [] for k in ("recorded", *clock_settings)}
    lags: list[float] = []
    for start in tqdm(range(0, len(chosen), 250), desc="probe", unit="batch"):
        rows = [int(k) for k in chosen[start:start + 250]]
        raw = torch.utils.data.default_collate([ds[k] for k in rows])
        batch = make_batch(raw, tok, texts, offsets, personas, torch.device("cpu"))
        with torch.no_grad():
            h, code_logits = net.encode(*(batch[n] for n in INPUT_NAMES))
            base_logits, delta_logits = net.head_all_codes(h)  # (B, K, 55, n_bins), (B, K, M-1, 55, S)
        log_z = F.log_softmax(code_logits, -1)
        base = batch["base"]  # (B, 55)
        deltas = batch["deltas"]  # (B, M-1, 55)
        lp_base = F.log_softmax(base_logits, -1).gather(-1, base[:, None, :, None].expand(-1, log_z.shape[1], -1, 1))
        lp_base = torch.logsumexp(log_z[:, :, None] + lp_base[..., 0], dim=1)  # (B, 55)
        lp_step = F.log_softmax(delta_logits, -1).gather(
            -1, deltas[:, None, :, :, None].expand(-1, log_z.shape[1], -1, -1, 1))
        lp_step = torch.logsumexp(log_z[:, :, None, None] + lp_step[..., 0], dim=1)  # (B, M-1, 55)
        channels = np.arange(ex.DIM)
        out["gained_base"].append(lp_base.numpy() - log_base_marginal[channels, base.numpy()])
        out["gained_step"].append((lp_step.numpy() - log_step_marginal[channels[None, None], deltas.numpy()]).mean(1))
        # Expected pitch change to frame 4 (keyframe 2), mixed over codes.
        p_z = log_z.exp()
        expected_steps = (F.softmax(delta_logits[:, :, :, pitch], -1) * step_values).sum(-1)  # (B, K, M-1)
        out["rise_model"].append((p_z[..., None] * expected_steps.cumsum(-1)).sum(1)[:, 1].numpy())
        out["rise_data"].append((raw["target"][:, 4, pitch] - raw["target"][:, 0, pitch]).numpy())
        first = (p_z[..., None] * delta_logits[:, :, 0, pitch]).sum(1)  # (B, S)
        out["pitch_odd"].append(((first - first.flip(-1)) / 2).numpy())
        recorded_steps = steps[deltas[:, :2, pitch].numpy()]  # (B, 2) in bins
        shares["recorded"].append(np.stack([(recorded_steps >= BIG_STEP_BINS).mean(1),
                                            (recorded_steps <= -BIG_STEP_BINS).mean(1)], -1))
        for name, clock in clock_settings.items():
            if clock is None:  # the recorded inputs: the logits above
                shares[name].append(big_step_shares(code_logits, delta_logits, pitch, big_up, big_down))
                continue
            with torch.no_grad():
                h_c, code_c = net.encode(*(torch.full_like(batch[n], clock) if n == "silence" else batch[n]
                                           for n in INPUT_NAMES))
                shares[name].append(big_step_shares(code_c, net.head_all_codes(h_c)[1], pitch, big_up, big_down))
        for k in rows:
            where = ds.index[k]
            now = where.tau / ex.FPS
            earlier = pause_starts[where.conversation][pause_starts[where.conversation] <= now]
            lags.append(now - earlier[-1] if len(earlier) else float("inf"))
    return Probed(**{k: np.concatenate(v) for k, v in out.items()}, lags=np.array(lags),
                  shares={k: np.concatenate(v) for k, v in shares.items()})


def nats_table(probed: Probed, split: str) -> dict[str, dict[str, float]]:
    gb, gs = probed.gained_base, probed.gained_step
    groups = [group_of(n) for n in ex.EXPRESSION_NAMES]
    table = {g: {"base_nats": float(gb[:, [i for i, x in enumerate(groups) if x == g]].mean()),
                 "step_nats": float(gs[:, [i for i, x in enumerate(groups) if x == g]].mean())} for g in GROUPS}
    table["all"] = {"base_nats": float(gb.mean()), "step_nats": float(gs.mean())}
    print(f"\nNats per token over the training split's token frequencies ({split}, {len(gb)} windows)")
    print(f"{'group':14s} {'base (level)':>13s} {'steps (motion)':>15s}")
    for g, row in table.items():
        print(f"{g:14s} {row['base_nats']:13.3f} {row['step_nats']:15.3f}")
    return table


def timing_table(probed: Probed) -> list[dict[str, Any]]:
    lags, rd, rm = probed.lags, probed.rise_data, probed.rise_model
    timing = []
    print("\nHead pitch change over the first 4 frames (mrad) vs time since a backchannel pause began")
    print(f"{'since pause (s)':>16s} {'windows':>8s} {'recorded':>9s} {'model':>7s}")
    for lo, hi in itertools.pairwise(LAG_EDGES_S):
        sel = (lags > lo) & (lags <= hi)
        row = {"from_s": lo, "to_s": hi, "windows": int(sel.sum()),
               "recorded_mrad": float(1000 * rd[sel].mean()) if sel.any() else None,
               "model_mrad": float(1000 * rm[sel].mean()) if sel.any() else None}
        timing.append(row)
        if sel.any():
            print(f"{lo:7.1f}-{hi:<8.1f} {row['windows']:8d} {row['recorded_mrad']:+9.2f} {row['model_mrad']:+7.2f}")
    return timing


def phase_table(probed: Probed) -> list[dict[str, Any]]:
    share, lags = probed.shares, probed.lags
    phase = []
    print(f"\nBig head-pitch steps (>= {BIG_STEP_BINS} bins), share rising / falling, vs time since the pause began")
    print(f"{'since pause (s)':>16s} " + " ".join(f"{k:>14s}" for k in share))
    for lo, hi in itertools.pairwise(LAG_EDGES_S):
        sel = (lags > lo) & (lags <= hi)
        if not sel.any():
            continue
        row: dict[str, Any] = {"from_s": lo, "to_s": hi, "windows": int(sel.sum())}
        row.update({f"{k} rising": float(v[sel, 0].mean()) for k, v in share.items()})
        row.update({f"{k} falling": float(v[sel, 1].mean()) for k, v in share.items()})
        phase.append(row)
        print(f"{lo:7.1f}-{hi:<8.1f} " + " ".join(f"{v[sel, 0].mean():6.3f} /{v[sel, 1].mean():6.3f}"
                                                   for v in share.values()))
    return phase


def symmetry_table(net: torch.nn.Module, probed: Probed) -> dict[str, float]:
    with torch.no_grad():
        emb = net.delta_embed(net.delta_features)  # (S, E)
    even, odd = (emb + emb.flip(0)) / 2, (emb - emb.flip(0)) / 2
    # How far the odd part moves with the context (the bias's constant lean removed).
    moved = np.linalg.norm(probed.pitch_odd - probed.pitch_odd.mean(0), axis=1)
    table = {"embedding_even_norm": float(even.norm()), "embedding_odd_norm": float(odd.norm()),
             "pitch_odd_logit_context_median": float(np.median(moved)),
             "pitch_odd_logit_context_p90": float(np.percentile(moved, 90))}
    print("\nStep logits: what can depend on the direction of a step")
    print(f"step embedding, even part {table['embedding_even_norm']:.2f}, odd part {table['embedding_odd_norm']:.2f}")
    print("first head-pitch step, odd part of the logits, distance from its mean over windows: "
          f"median {table['pitch_odd_logit_context_median']:.3f}, 90th percentile "
          f"{table['pitch_odd_logit_context_p90']:.3f}")
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", type=Path, default=Path("models/policy"))
    p.add_argument("--data", type=Path, default=Path("data/synth"))
    p.add_argument("--split", default="val")
    p.add_argument("--windows", type=int, default=4000, help="recorded windows to probe (default 4000)")
    p.add_argument("--cache", type=Path, default=Path("runs/probe"), help="where the transcript embeddings are cached")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/policy_probe.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    bundle = load_policy(args.model_dir, need_onnx=False)
    probed = probe_windows(args, bundle)
    result = {"model_dir": str(args.model_dir), "data": str(args.data), "split": args.split,
              "windows": len(probed.lags), "nats_over_marginal": nats_table(probed, args.split),
              "nod_timing": timing_table(probed), "nod_phase": phase_table(probed),
              "step_symmetry": symmetry_table(bundle.net, probed)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
