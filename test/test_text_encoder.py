"""Transcript embeddings: ONNX export of the bundled all-MiniLM-L6-v2, parity, caching, truncation."""

from __future__ import annotations

import os

import numpy as np
import pytest

from face_expr_ros.perception.text_encoder import MAX_TOKENS, TextEncoder, bundled_model_dir, export_text_encoder

TEXTS = ["hello there", "I went to the market yesterday and, honestly, it was a bit strange.",
         "mm-hm", "Do you think that the robot understood what I just said about my sister's wedding?"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = tmp_path_factory.mktemp("text_encoder")
    export_text_encoder(folder)
    return folder


def test_parity_with_sentence_transformers(encoder_dir):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(bundled_model_dir()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    ours = TextEncoder(encoder_dir).embed_batch(TEXTS)
    assert ours.shape == (4, 384)
    cos = (ours * reference).sum(-1) / np.linalg.norm(ours, axis=-1) / np.linalg.norm(reference, axis=-1)
    assert (cos > 0.999).all(), cos
    np.testing.assert_allclose(np.linalg.norm(ours, axis=-1), 1.0, atol=1e-5)
    # Batched (padded) and single embeddings agree: padding is masked out of the mean.
    single = TextEncoder(encoder_dir).embed(TEXTS[2])
    np.testing.assert_allclose(single, ours[2], atol=1e-5)


def test_embeds_only_when_the_transcript_changes(encoder_dir):
    enc = TextEncoder(encoder_dir)
    a = enc.embed("so I said")
    b = enc.embed("so I said")
    assert enc.calls == 1 and b is a
    c = enc.embed("so I said yes")
    assert enc.calls == 2 and not np.allclose(a, c)


def test_empty_transcript_is_the_zero_vector(encoder_dir):
    enc = TextEncoder(encoder_dir)
    assert (enc.embed("") == 0).all() and (enc.embed_batch(["", "  "]) == 0).all() and enc.calls == 0


def test_long_transcripts_keep_the_most_recent_words(encoder_dir):
    enc = TextEncoder(encoder_dir)
    encoding = enc.tokenizer.encode("word " * 600 + "finale")
    assert len(encoding.ids) == MAX_TOKENS
    assert encoding.tokens[0] == "[CLS]" and encoding.tokens[-1] == "[SEP]" and encoding.tokens[-2] == "finale"
    assert np.isfinite(enc.embed("blah " * 600)).all()


def test_missing_export_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_text_encoder"):
        TextEncoder(tmp_path)
