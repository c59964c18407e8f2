"""Action tokenizer: percentile bins, constant dimensions, chunk codec, files and hashes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from face_expr_ros import expression as ex
from face_expr_ros.policy.fixtures import synthetic_actions
from face_expr_ros.policy.tokenizer import DELTA_STEPS, ActionTokenizer, TokenizerError

TONGUE = ex.index("tongueOut")


@pytest.fixture(scope="module")
def tok() -> ActionTokenizer:
    return ActionTokenizer.fit(synthetic_actions(4000), horizon=8, n_keyframes=3)


def test_edges_are_the_0_1th_and_99_9th_percentiles(tok):
    acts = synthetic_actions(4000)
    np.testing.assert_allclose(tok.lo, np.percentile(acts, 0.1, axis=0), atol=1e-6)
    np.testing.assert_allclose(tok.hi[:TONGUE], np.percentile(acts, 99.9, axis=0)[:TONGUE], atol=1e-6)
    assert tok.n_bins == 256 and tok.centers.shape == (ex.DIM, 256)


def test_a_blink_in_the_top_percent_of_eyelid_values_survives_encoding():
    # Eyes closed in 0.6 % of frames: with 1st-99th percentile edges the eyelid range would end
    # at 0 and a blink would decode as open eyes.
    acts = np.zeros((5000, ex.DIM))
    blink = ex.EXPRESSION_NAMES.index("eyeBlinkLeft")
    acts[::160, blink] = 1.0
    acts[1::160, blink] = 0.6
    acts[2::160, blink] = 0.3
    tok = ActionTokenizer.fit(acts)
    closed = np.zeros((1, tok.horizon, ex.DIM))
    closed[0, tok.keyframe_times[1], blink] = 1.0
    decoded = tok.decode_chunk(*tok.encode_chunk(closed))
    assert decoded[0, tok.keyframe_times[1], blink] > 0.95


def test_constant_dimension_round_trips_exactly(tok):
    assert tok.constant[TONGUE] and tok.constant.sum() == 1
    frames = synthetic_actions(50, seed=3)
    bins = tok.encode(frames)
    assert (bins[:, TONGUE] == 0).all()
    assert (tok.decode(bins)[:, TONGUE] == 0.0).all()


def test_encode_decode_error_is_at_most_half_a_bin_inside_range(tok):
    frames = synthetic_actions(500, seed=7)
    inside = (frames >= tok.lo) & (frames <= tok.hi)
    err = np.abs(tok.decode(tok.encode(frames)) - frames)
    assert (err[inside] <= (tok.width / 2 + 1e-6)[np.nonzero(inside)[1]]).all()
    # Out of range values clip to the end bins.
    big = np.full((1, ex.DIM), 1e3, np.float32)
    assert (tok.encode(big)[0, ~tok.constant] == 255).all()


def test_chunk_codec_reconstructs_smooth_chunks(tok):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 8)[:, None]
    start, end = rng.uniform(tok.lo, tok.hi, (2, ex.DIM))
    chunk = ex.clamp(start + (end - start) * t)  # a linear chunk: representable up to bin rounding
    base, deltas = tok.encode_chunk(chunk)
    assert base.shape == (ex.DIM,) and deltas.shape == (2, ex.DIM)
    recon = tok.decode_chunk(base, deltas)
    step_err = np.array(DELTA_STEPS[1:]) - np.array(DELTA_STEPS[:-1])
    tol = (tok.width * (0.5 + step_err.max() / 2))[None]  # worst case: half the coarsest step gap
    assert (np.abs(recon - chunk) <= tol + 1e-6).all()
    # Small moves (away from the clipping edges) are exact to one bin.
    start = rng.uniform(tok.lo, tok.hi - 4 * tok.width)
    small = ex.clamp(start + 3 * tok.width * t)
    err = np.abs(tok.decode_chunk(*tok.encode_chunk(small)) - small)
    assert (err <= 1.01 * tok.width + 1e-6).all()


def test_decode_chunk_is_piecewise_linear_between_keyframes(tok):
    assert tok.keyframe_times.tolist() == [0, 4, 7]
    base = np.full(ex.DIM, 10)
    deltas = np.stack([np.full(ex.DIM, DELTA_STEPS.index(16)), np.full(ex.DIM, DELTA_STEPS.index(-8))])
    chunk = tok.decode_chunk(base, deltas)[:, ~tok.constant]
    keys = tok.decode(np.stack([base, base + 16, base + 8]))[:, ~tok.constant]
    np.testing.assert_allclose(chunk[[0, 4, 7]], keys, atol=1e-6)
    for a, b in ((0, 4), (4, 7)):  # straight lines between keyframes, no frame-to-frame noise
        assert np.abs(np.diff(chunk[a:b + 1], 2, axis=0)).max() < 1e-5


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_any_chunk_encodes_to_valid_tokens(seed):
    tok = ActionTokenizer.fit(synthetic_actions(500, seed=1))
    rng = np.random.default_rng(seed)
    chunk = rng.uniform(ex.LOWER - 0.5, ex.UPPER + 0.5, (3, 8, ex.DIM))
    base, deltas = tok.encode_chunk(chunk)
    assert base.min() >= 0 and base.max() < 256 and deltas.min() >= 0 and deltas.max() < len(DELTA_STEPS)
    keys = tok.keyframe_bins(base, deltas)
    assert keys.min() >= 0 and keys.max() <= 255
    # Encoding is a fixed point: the decoded chunk encodes to the same tokens.
    b2, d2 = tok.encode_chunk(tok.decode_chunk(base, deltas))
    assert np.array_equal(tok.keyframe_bins(b2, d2), keys)


def test_save_load_and_hash(tok, tmp_path):
    path = tok.save(tmp_path / "tokenizer.json")
    back = ActionTokenizer.load(path)
    assert back.sha256 == tok.sha256
    np.testing.assert_array_equal(back.lo, tok.lo)
    other = ActionTokenizer.fit(synthetic_actions(4000, seed=9))
    assert other.sha256 != tok.sha256


def test_edited_or_bad_files_are_named_errors(tok, tmp_path):
    path = tok.save(tmp_path / "tokenizer.json")
    payload = json.loads(path.read_text())
    payload["hi"][0] += 0.1
    path.write_text(json.dumps(payload))
    with pytest.raises(TokenizerError, match=r"tokenizer.json.*'sha256'"):
        ActionTokenizer.load(path)
    path.write_text("{not json")
    with pytest.raises(TokenizerError, match="not valid JSON"):
        ActionTokenizer.load(path)
    with pytest.raises(TokenizerError, match="not found"):
        ActionTokenizer.load(tmp_path / "missing.json")
    with pytest.raises(TokenizerError, match="NaN"):
        tok.encode(np.full(ex.DIM, np.nan))
    with pytest.raises(TokenizerError, match="shape"):
        tok.encode_chunk(np.zeros((7, ex.DIM)))
