"""ONNX export of the policy in two graphs, and the PyTorch <-> ONNX Runtime parity check.

The policy samples a chunk latent ``z`` between its two halves (``network.py``), and sampling
stays outside the graph (``sampling.py``), so it is exported as two files:

* ``policy.onnx``: ``speaker, face_present, audio, silence, text, listener_past`` ->
  ``h, code_logits`` (the encoders and the transformer);
* ``policy_head.onnx``: ``h, code`` -> ``base_logits, delta_logits``.

All shapes are static except the batch axis (what TensorRT optimisation profiles want), opset 17.
The TorchScript exporter is used (``dynamo=False``): it is deterministic, takes well under a
second for this graph, and the graph has no data-dependent control flow that would need
``torch.export``.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor, nn

from face_expr_ros import expression as ex
from face_expr_ros.policy.network import INPUT_NAMES, ListenerPolicy, PolicyConfig

OPSET = 17
ENCODER_FILE = "policy.onnx"
HEAD_FILE = "policy_head.onnx"
ENCODER_OUTPUTS = ("h", "code_logits")
HEAD_INPUTS = ("h", "code")
HEAD_OUTPUTS = ("base_logits", "delta_logits")


class _Encoder(nn.Module):
    def __init__(self, net: ListenerPolicy) -> None:
        super().__init__()
        self.net = net

    def forward(self, speaker: Tensor, face_present: Tensor, audio: Tensor, silence: Tensor, text: Tensor,
                listener_past: Tensor, persona: Tensor) -> tuple[Tensor, Tensor]:
        return self.net.encode(speaker, face_present, audio, silence, text, listener_past, persona)


class _Head(nn.Module):
    def __init__(self, net: ListenerPolicy) -> None:
        super().__init__()
        self.net = net

    def forward(self, h: Tensor, code: Tensor) -> tuple[Tensor, Tensor]:
        return self.net.head(h, code)


def random_inputs(cfg: PolicyConfig, batch: int, seed: int = 0) -> dict[str, NDArray[np.float32]]:
    """Random but *valid* network inputs: expressions in range, a 0/1 face flag, unit text."""
    rng = np.random.default_rng(seed)
    w = cfg.window
    speaker = rng.uniform(ex.LOWER, ex.UPPER, (batch, w, ex.DIM)).astype(np.float32)
    past = rng.uniform(ex.LOWER, ex.UPPER, (batch, w, ex.DIM)).astype(np.float32)
    audio = rng.normal(0.0, 3.0, (batch, w, cfg.audio_dim)).astype(np.float32)
    audio[..., : cfg.audio_dim - 4] -= 10.0  # log-mel values are mostly negative
    text = rng.normal(size=(batch, cfg.text_dim)).astype(np.float32)
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    return {
        "speaker": speaker,
        "face_present": (rng.random((batch, w)) < 0.8).astype(np.float32),
        "audio": audio,
        "silence": rng.exponential(1.0, (batch, w)).astype(np.float32),
        "text": text,
        "listener_past": past,
        "persona": rng.normal(size=(batch, cfg.persona_dim)).astype(np.float32),
    }


def export_onnx(net: ListenerPolicy, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``policy.onnx`` and ``policy_head.onnx`` into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = net.cfg
    was_training = net.training
    net.eval()
    # Batch 2 in the example: a size-1 example can get specialised into the graph as a constant.
    example = {k: torch.from_numpy(v) for k, v in random_inputs(cfg, 2).items()}
    enc_path, head_path = out_dir / ENCODER_FILE, out_dir / HEAD_FILE
    batch_axis = {0: "batch"}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            _Encoder(net), tuple(example[n] for n in INPUT_NAMES), str(enc_path), input_names=list(INPUT_NAMES),
            output_names=list(ENCODER_OUTPUTS), dynamic_axes={n: batch_axis for n in INPUT_NAMES + ENCODER_OUTPUTS},
            opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
        h = torch.zeros(2, cfg.d_model)
        code = torch.zeros(2, dtype=torch.int64)
        torch.onnx.export(
            _Head(net), (h, code), str(head_path), input_names=list(HEAD_INPUTS), output_names=list(HEAD_OUTPUTS),
            dynamic_axes={n: batch_axis for n in HEAD_INPUTS + HEAD_OUTPUTS},
            opset_version=OPSET, dynamo=False, do_constant_folding=True,
        )
    net.train(was_training)
    return enc_path, head_path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parity_report(net: ListenerPolicy, model_dir: str | Path, batch: int = 4, seed: int = 0,
                  threads: int = 2) -> dict[str, float | bool]:
    """Max abs logit differences PyTorch vs ONNX Runtime, and whether sampled tokens agree."""
    from face_expr_ros.policy.backends import OnnxRuntimeBackend, TorchBackend
    from face_expr_ros.policy.sampling import sample_chunk

    inputs = random_inputs(net.cfg, batch, seed)
    torch_be, ort_be = TorchBackend(net), OnnxRuntimeBackend(model_dir, threads=threads)
    h_t, c_t = torch_be.encode(inputs)
    h_o, c_o = ort_be.encode(inputs)
    code = np.arange(batch, dtype=np.int64) % net.cfg.n_codes
    b_t, d_t = torch_be.head(h_t, code)
    b_o, d_o = ort_be.head(h_t, code)  # the same h in both: isolates the head's own error
    report: dict[str, float | bool] = {
        "h": float(np.abs(h_t - h_o).max()), "code_logits": float(np.abs(c_t - c_o).max()),
        "base_logits": float(np.abs(b_t - b_o).max()), "delta_logits": float(np.abs(d_t - d_o).max()),
    }
    same = True
    for temperature, top_p in ((1.0, 1.0), (0.7, 0.9), (0.0, 1.0)):
        s_t = sample_chunk(h_t, c_t, torch_be.head, np.random.default_rng(seed), temperature=temperature, top_p=top_p)
        s_o = sample_chunk(h_o, c_o, ort_be.head, np.random.default_rng(seed), temperature=temperature, top_p=top_p)
        same &= bool(np.array_equal(s_t.code, s_o.code) and np.array_equal(s_t.base, s_o.base)
                     and np.array_equal(s_t.deltas, s_o.deltas))
    report["same_tokens"] = same
    return report
