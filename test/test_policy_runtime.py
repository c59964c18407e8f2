"""Streaming runtime: window, re-planning, blending, missing inputs, back-end selection, TensorRT cache."""

from __future__ import annotations

import numpy as np
import pytest

from face_expr_ros import expression as ex
from face_expr_ros.learning.features import MAX_SILENCE_S, VAD_INDEX, SilenceClock, seconds_of_silence
from face_expr_ros.policy.backends import EngineCache, TorchBackend, engine_cache_key, select_backend
from face_expr_ros.policy.fixtures import make_policy
from face_expr_ros.policy.network import PolicyConfig
from face_expr_ros.policy.runtime import Observation, Policy, silent_audio_frame


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return make_policy(tmp_path_factory.mktemp("rt") / "policy", seed=6)


def _observations(n, seed=0):
    rng = np.random.default_rng(seed)
    for k in range(n):
        face = None if k % 10 == 7 else rng.uniform(0.0, 0.5, ex.DIM).astype(np.float32) * (ex.UPPER > 0)
        audio = None if k % 13 == 5 else rng.normal(-5.0, 2.0, 44).astype(np.float32)
        yield Observation(face, audio, None if k < 20 else np.full(384, 384 ** -0.5, np.float32))


def test_step_outputs_valid_frames_and_replans_on_schedule(saved):
    policy = Policy.load(saved[2], "onnxruntime", replan_every=3)
    plans = []
    outs = []
    for obs in _observations(40):
        before = policy.last_sample
        outs.append(policy.step(obs))
        plans.append(policy.last_sample is not before)
    outs = np.array(outs)
    assert outs.shape == (40, ex.DIM) and ex.is_valid(outs)
    assert [k for k, p in enumerate(plans) if p] == list(range(0, 40, 3))
    # The window feeds the outputs back as listener_past, history_delay frames behind.
    np.testing.assert_array_equal(policy.inputs()["listener_past"][0, -1], outs[-1 - policy.cfg.history_delay])


def _plans(policy, n=60):
    """The ChunkSample of every plan made while stepping through ``n`` observations."""
    plans = []
    for obs in _observations(n):
        before = policy.last_sample
        policy.step(obs)
        if policy.last_sample is not before:
            plans.append(policy.last_sample)
    return plans


def _codes(policy, n=60):
    return [int(p.code[0]) for p in _plans(policy, n)]


def test_code_persistence_keeps_the_behaviour_and_eyelids_move_together(saved):
    eyelids = [ex.EXPRESSION_NAMES.index("eyeBlinkLeft"), ex.EXPRESSION_NAMES.index("eyeBlinkRight")]
    free = _codes(Policy.load(saved[2], "onnxruntime", code_persistence=0.0, seed=3))
    sticky_policy = Policy.load(saved[2], "onnxruntime", code_persistence=20.0, seed=3)
    sticky = _codes(sticky_policy)
    assert len(set(free)) > 1 and set(sticky) == {sticky[0]}
    sample = sticky_policy.last_sample
    assert sample.base[0, eyelids[0]] == sample.base[0, eyelids[1]]
    assert np.array_equal(sample.deltas[0][:, eyelids[0]], sample.deltas[0][:, eyelids[1]])
    with pytest.raises(ValueError, match="code_persistence"):
        Policy.load(saved[2], "onnxruntime", code_persistence=-1.0)


def test_level_noise_makes_levels_wander_instead_of_jumping(saved):
    eyelids = [ex.index("eyeBlinkLeft"), ex.index("eyeBlinkRight")]
    others = np.setdiff1d(np.arange(ex.DIM), eyelids)
    steps = {}
    for tau in (0.0, 30.0):
        policy = Policy.load(saved[2], "onnxruntime", code_persistence=20.0, token_temperature=1.0,
                             level_noise_tau_s=tau, seed=4, persona="mean")
        bases = np.array([p.base[0] for p in _plans(policy, 80)])
        steps[tau] = np.abs(np.diff(bases, axis=0)).mean(axis=0)
    # Same code throughout (persistence 20): only the context and the noise move the levels.
    assert steps[30.0][others].mean() < 0.5 * steps[0.0][others].mean()
    # The eyelids keep drawing afresh: blinks are events, not levels.
    assert steps[30.0][eyelids].mean() > 0.5 * steps[0.0][eyelids].mean()
    with pytest.raises(ValueError, match="level_noise_tau_s"):
        Policy.load(saved[2], "onnxruntime", level_noise_tau_s=-1.0)


def test_history_delay_feeds_older_outputs(tmp_path):
    cfg = PolicyConfig(window=8, horizon=4, n_keyframes=3, history_delay=5, d_model=32, n_heads=2, d_ff=64, query_dim=8,
                       n_codes=4)
    _net, _tok, path = make_policy(tmp_path / "p", cfg, export=False)
    policy = Policy.load(path, "torch", replan_every=2)
    outs = np.array([policy.step(obs) for obs in _observations(20)])
    # As learning/dataset.py builds it for the next frame t = 20: outputs of frames t-W-D .. t-1-D.
    np.testing.assert_array_equal(policy.inputs()["listener_past"][0], outs[20 - 8 - 5:20 - 5])


def test_missing_inputs_are_filled_not_guessed(saved):
    policy = Policy.load(saved[2], "onnxruntime")
    face = np.linspace(0, 0.5, ex.DIM).astype(np.float32) * (ex.UPPER > 0)
    policy.step(Observation(face, None, None))
    policy.step(Observation(None, None, None))
    x = policy.inputs()
    np.testing.assert_array_equal(x["speaker"][0, -1], face)  # the last speaker frame is kept...
    assert x["face_present"][0, -2:].tolist() == [1.0, 0.0]  # ...but flagged as absent
    np.testing.assert_array_equal(x["audio"][0, -1], silent_audio_frame(44))
    assert silent_audio_frame(44)[-4] == pytest.approx(-2.0)  # -120 dB through the dataset's scaling
    assert (x["text"] == 0).all() and x["silence"][0, -1] == MAX_SILENCE_S  # the voice never heard
    # Before any face at all: neutral.
    policy.reset()
    policy.step(Observation())
    assert (policy.inputs()["speaker"][0, -1] == ex.NEUTRAL).all()


def test_silence_clock_follows_the_audio_vad_as_in_training(saved):
    # Voiced, four unvoiced frames, two frames without audio (a silent frame: the clock runs on),
    # voiced again, one unvoiced: the runtime's window holds what training computes for the
    # same audio (features.seconds_of_silence), and a new conversation starts as never heard.
    policy = Policy.load(saved[2], "onnxruntime")
    voiced = np.zeros(44, np.float32)
    voiced[VAD_INDEX] = 1.0
    unvoiced = np.zeros(44, np.float32)
    stream = [voiced, unvoiced, unvoiced, unvoiced, unvoiced, None, None, voiced, unvoiced]
    for audio in stream:
        policy.step(Observation(None, audio, None))
    window = policy.inputs()["silence"][0, -len(stream):]
    expected = np.array([0, 1, 2, 3, 4, 5, 6, 0, 1], np.float32) / 30
    np.testing.assert_allclose(window, expected, atol=1e-7)
    frames = np.stack([silent_audio_frame(44) if a is None else a for a in stream])
    np.testing.assert_array_equal(window, seconds_of_silence(frames))
    assert policy.inputs()["silence"][0, 0] == MAX_SILENCE_S  # before the first frame: never heard
    policy.reset()
    policy.step(Observation(None, unvoiced, None))
    assert policy.inputs()["silence"][0, -1] == MAX_SILENCE_S


def test_silence_clock_streams_the_batch_definition():
    rng = np.random.default_rng(4)
    audio = np.zeros((3000, 5), np.float32)
    audio[:, VAD_INDEX] = rng.random(3000) < 0.3
    audio[:40, VAD_INDEX] = 0.0  # not heard yet
    audio[999, VAD_INDEX] = 1.0
    audio[1000:2000, VAD_INDEX] = 0.0  # a pause longer than the 30 s cap
    batch = seconds_of_silence(audio)
    clock = SilenceClock()
    np.testing.assert_array_equal(batch, np.array([clock.update(bool(v > 0.5)) for v in audio[:, VAD_INDEX]],
                                                  np.float32))
    assert (batch[:40] == MAX_SILENCE_S).all() and batch[1898] == pytest.approx(899 / 30)
    assert batch[1999] == MAX_SILENCE_S  # capped
    assert batch.max() <= MAX_SILENCE_S and (batch[audio[:, VAD_INDEX] > 0.5] == 0).all()


def test_seeded_runtime_is_reproducible_and_backend_independent(saved):
    _net, _tok, path = saved
    runs = []
    for backend in ("onnxruntime", "torch", "onnxruntime"):
        policy = Policy.load(path, backend, seed=123, temperature=0.8, top_p=0.9)
        runs.append(np.array([policy.step(o) for o in _observations(30)]))
    np.testing.assert_array_equal(runs[0], runs[2])
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-5)
    other = Policy.load(path, "onnxruntime", seed=124, temperature=0.8, top_p=0.9)
    assert not np.allclose(runs[0], np.array([other.step(o) for o in _observations(30)]))


def test_temperature_zero_is_deterministic_across_seeds(saved):
    """Greedy decoding consumes no randomness; the persona is a choice of its own (here the same one)."""
    outs = []
    for seed in (1, 2):
        policy = Policy.load(saved[2], "onnxruntime", seed=seed, temperature=0.0, persona=2)
        outs.append(np.array([policy.step(o) for o in _observations(12)]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_blending_is_smoother_than_raw_chunks(saved):
    """Chunk seams: ensembling and cross-fading both cut the jump at re-plans vs no blending."""
    def jerk(blend, decay=0.0, replan=4):
        policy = Policy.load(saved[2], "onnxruntime", seed=0, replan_every=replan, blend=blend, ensemble_decay=decay)
        out = np.array([policy.step(o) for o in _observations(80)])
        return np.abs(np.diff(out, axis=0)).mean()

    raw = jerk("ensemble", replan=8)  # re-plan only when a chunk ends: one chunk at a time, hard seams
    assert jerk("ensemble", decay=0.0, replan=2) < raw


def test_crossfade_ramps_linearly(saved):
    net, tok, _ = saved
    policy = Policy(TorchBackend(net), net.cfg, tok, replan_every=2, blend="crossfade")
    policy._chunks.extend([(0, np.zeros((8, ex.DIM), np.float32)), (2, np.ones((8, ex.DIM), np.float32))])
    assert [float(policy._blend(t)[0]) for t in (2, 3, 4)] == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_blend_weights_follow_act(saved):
    net, tok, _path = saved
    policy = Policy(TorchBackend(net), net.cfg, tok, replan_every=1, blend="ensemble", ensemble_decay=0.5)
    a = np.zeros((8, ex.DIM), np.float32)
    b = np.ones((8, ex.DIM), np.float32)
    policy._chunks.extend([(0, a), (1, b)])
    w = np.exp(-0.5 * np.arange(2))
    np.testing.assert_allclose(policy._blend(1), np.full(ex.DIM, w[1] / w.sum()), rtol=1e-6)


def test_output_smoothing_spares_the_eyelids(saved):
    net, tok, _ = saved
    policy = Policy(TorchBackend(net), net.cfg, tok, smoothing_s=0.1)
    policy._smooth(np.zeros(ex.DIM, np.float32))
    step = [policy._smooth(np.ones(ex.DIM, np.float32)) for _ in range(60)]
    lids = ex.indices(("eyeBlinkLeft", "eyeBlinkRight"))
    others = np.setdiff1d(np.arange(ex.DIM), lids)
    assert (step[0][lids] == 1.0).all() and (step[0][others] < 0.2).all()  # critically damped: slow start
    assert (np.diff([s[others[0]] for s in step]) >= 0).all()  # no overshoot
    assert step[-1][others] == pytest.approx(1.0, abs=1e-3)
    raw = Policy(TorchBackend(net), net.cfg, tok, smoothing_s=0.0)
    raw._smooth(np.zeros(ex.DIM, np.float32))
    assert (raw._smooth(np.ones(ex.DIM, np.float32)) == 1.0).all()


def test_bad_runtime_settings(saved):
    net, tok, _ = saved
    with pytest.raises(ValueError, match="replan_every"):
        Policy(TorchBackend(net), net.cfg, tok, replan_every=9)
    with pytest.raises(ValueError, match="blend"):
        Policy(TorchBackend(net), net.cfg, tok, blend="average")
    with pytest.raises(ValueError, match="smoothing_s"):
        Policy(TorchBackend(net), net.cfg, tok, smoothing_s=-0.1)
    for bad in ({"token_temperature": -1.0}, {"eyelid_temperature": -0.5}, {"gaze_temperature": -0.1},
                {"head_temperature": -0.2}):
        with pytest.raises(ValueError, match="token/eyelid/gaze/head temperatures >= 0"):
            Policy(TorchBackend(net), net.cfg, tok, **bad)


def test_eyelids_gaze_and_head_have_their_own_token_temperature(saved):
    net, tok, _ = saved
    gaze = [i for i, name in enumerate(ex.EXPRESSION_NAMES) if name.startswith("eyeLook")]
    lids = ex.indices(("eyeBlinkLeft", "eyeBlinkRight"))
    head = list(range(ex.N_BLENDSHAPES, ex.DIM))
    policy = Policy(TorchBackend(net), net.cfg, tok, token_temperature=0.0, eyelid_temperature=0.0,
                    gaze_temperature=1.0, head_temperature=0.0, level_noise_tau_s=0.0, code_persistence=0.0)
    h, _ = policy.backend.encode(policy.inputs())
    one_code = np.full((1, net.cfg.n_codes), -1e4, np.float32)
    one_code[0, 2] = 0.0  # the same code every draw: only the tokens' temperatures differ
    draws = [policy.sample(h, one_code) for _ in range(40)]
    base = np.stack([d.base[0] for d in draws])
    others = np.setdiff1d(np.arange(ex.DIM), gaze)
    assert (base[:, others] == base[0, others]).all()  # greedy: the token temperature 0, eyelids too
    assert len({tuple(row) for row in base[:, gaze]}) > 5  # the gaze is drawn at temperature 1
    # With the defaults the eyelids, the gaze and the head are drawn at their own temperatures.
    temps = Policy(TorchBackend(net), net.cfg, tok)._token_temperatures()
    assert np.allclose(temps[lids], 1.15) and np.allclose(temps[gaze], 1.0) and np.allclose(temps[head], 0.0)
    assert np.allclose(np.delete(temps, np.r_[lids, gaze, head]), 0.7)


def test_greedy_head_follows_the_code(saved):
    """At head temperature 0 the head's tokens are the argmax given the drawn code, whatever the
    other channels draw: the same code gives the same head, another code may give another."""
    net, tok, _ = saved
    head = list(range(ex.N_BLENDSHAPES, ex.DIM))
    policy = Policy(TorchBackend(net), net.cfg, tok, token_temperature=1.0, head_temperature=0.0,
                    level_noise_tau_s=0.0, code_persistence=0.0)
    h, _ = policy.backend.encode(policy.inputs())
    heads_by_code = {}
    for code in range(net.cfg.n_codes):
        one_code = np.full((1, net.cfg.n_codes), -1e4, np.float32)
        one_code[0, code] = 0.0
        draws = [policy.sample(h, one_code) for _ in range(10)]
        base_logits, delta_logits = policy.backend.head(h, np.array([code]))
        for d in draws:
            assert (d.code == code).all()
            assert (d.base[0, head] == base_logits[0, head].argmax(-1)).all()
            assert (d.deltas[0][:, head] == delta_logits[0][:, head].argmax(-1)).all()
        assert len({tuple(d.base[0, :ex.N_BLENDSHAPES]) for d in draws}) > 1  # the face is still drawn
        heads_by_code[code] = tuple(draws[0].base[0, head])
    assert len(set(heads_by_code.values())) > 1


# ---------------------------------------------------------------- back-end selection and TensorRT
# TensorRT cannot be installed on this CPU machine: the selection and cache logic is tested with
# a stand-in ``build`` function (a FAKE engine builder) and an explicit ``trt_ok`` flag.

def test_select_backend():
    assert select_backend("auto", trt_ok=False) == "onnxruntime"
    assert select_backend("auto", trt_ok=True) == "tensorrt"
    assert select_backend("torch", trt_ok=True) == "torch"
    with pytest.raises(RuntimeError, match="TensorRT or a CUDA GPU is not available"):
        select_backend("tensorrt", trt_ok=False)
    with pytest.raises(ValueError, match="unknown back-end"):
        select_backend("tflite", trt_ok=False)


def test_engine_cache_key_changes_with_every_ingredient():
    base = engine_cache_key("a" * 64, "10.3.0", "NVIDIA GeForce RTX 4090", False)
    assert base == "aaaaaaaaaaaaaaaa-trt10.3.0-nvidia-geforce-rtx-4090-fp32"
    others = {engine_cache_key("b" * 64, "10.3.0", "NVIDIA GeForce RTX 4090", False),
              engine_cache_key("a" * 64, "10.4.0", "NVIDIA GeForce RTX 4090", False),
              engine_cache_key("a" * 64, "10.3.0", "Orin (nvgpu)", False),
              engine_cache_key("a" * 64, "10.3.0", "NVIDIA GeForce RTX 4090", True)}
    assert base not in others and len(others) == 4


def test_engine_cache_builds_once_and_rebuilds_on_change(tmp_path):
    onnx_path = tmp_path / "policy.onnx"
    onnx_path.write_bytes(b"graph-v1")
    calls = []

    def fake_build(path, fp16, timing_cache):  # FAKE: stands in for build_tensorrt_engine
        calls.append((path.read_bytes(), fp16, timing_cache.name))
        return b"engine:" + path.read_bytes()

    cache = EngineCache(tmp_path / "engines", "10.3.0", "RTX 4090")
    assert cache.get_or_build(onnx_path, False, fake_build) == (b"engine:graph-v1", True)
    assert cache.get_or_build(onnx_path, False, fake_build) == (b"engine:graph-v1", False)
    assert len(calls) == 1 and calls[0][2].startswith("timing-")
    onnx_path.write_bytes(b"graph-v2")  # a new model: rebuilt, and the stale engine removed
    assert cache.get_or_build(onnx_path, False, fake_build) == (b"engine:graph-v2", True)
    assert len(list((tmp_path / "engines").glob("policy-*.engine"))) == 1
    newer = EngineCache(tmp_path / "engines", "10.4.0", "RTX 4090")  # TensorRT upgrade: rebuilt
    assert newer.get_or_build(onnx_path, False, fake_build)[1]
    assert cache.get_or_build(onnx_path, True, fake_build)[1]  # FP16 is its own engine
    assert len(calls) == 4


@pytest.mark.gpu
def test_tensorrt_matches_onnxruntime(saved, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU machine)")
    from face_expr_ros.policy.backends import tensorrt_available

    if not tensorrt_available():
        pytest.skip("no CUDA GPU visible")
    net, _tok, path = saved
    from face_expr_ros.policy.backends import OnnxRuntimeBackend, TensorRTBackend
    from face_expr_ros.policy.export import random_inputs

    trt_be = TensorRTBackend(path, engines_dir=tmp_path / "engines")
    ort_be = OnnxRuntimeBackend(path)
    x = random_inputs(net.cfg, 3)
    (_h1, c1), (h2, c2) = trt_be.encode(x), ort_be.encode(x)
    assert np.abs(c1 - c2).max() < 1e-3
    code = np.zeros(3, np.int64)
    assert np.abs(trt_be.head(h2, code)[0] - ort_be.head(h2, code)[0]).max() < 1e-3
