"""Policy network and sampler: shapes, size, exact log-probabilities, temperature and top-p."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from face_expr_ros import expression as ex
from face_expr_ros.policy.backends import TorchBackend
from face_expr_ros.policy.export import random_inputs
from face_expr_ros.policy.fixtures import make_net
from face_expr_ros.policy.network import INPUT_NAMES, PolicyConfig, count_parameters, flops_per_plan
from face_expr_ros.policy.sampling import LevelNoise, sample_categorical, sample_chunk, sampling_log_probs


@pytest.fixture(scope="module")
def net():
    return make_net(seed=1)


@pytest.fixture(scope="module")
def inputs(net):
    return random_inputs(net.cfg, 3, seed=2)


def test_shapes_and_default_size(net, inputs):
    cfg = net.cfg
    be = TorchBackend(net)
    h, code_logits = be.encode(inputs)
    assert h.shape == (3, cfg.d_model) and code_logits.shape == (3, cfg.n_codes)
    base, delta = be.head(h, np.zeros(3, np.int64))
    assert base.shape == (3, ex.DIM, 256) and delta.shape == (3, cfg.n_keyframes - 1, ex.DIM, cfg.n_deltas)
    # Factorised head: far below the naive D x (55 x H x 256) output layer.
    naive = cfg.d_model * ex.DIM * cfg.horizon * 256
    head = sum(p.numel() for n, p in net.named_parameters() if n.startswith(("base_", "delta_", "bin_", "head_")))
    assert head < naive / 5
    assert count_parameters(net) < 1_500_000
    assert flops_per_plan(cfg)["total"] < 40e6


def test_encoder_is_causal(net, inputs):
    """Changing the last frame must not change what earlier positions computed (causal mask)."""
    x = {k: torch.from_numpy(v) for k, v in inputs.items()}
    block = net.blocks[0]
    tokens = torch.randn(1, net.cfg.window, net.cfg.d_model)
    changed = tokens.clone()
    changed[:, -1] += 5.0
    with torch.no_grad():
        a, b = block(tokens), block(changed)
    assert torch.allclose(a[:, :-1], b[:, :-1], atol=1e-6) and not torch.allclose(a[:, -1], b[:, -1])
    with torch.no_grad():
        h1, _ = net.encode(*(x[n] for n in INPUT_NAMES))
    assert torch.isfinite(h1).all()


def test_sampled_log_prob_equals_network_log_prob(net, inputs):
    """The sampler's model log-prob (sum over every discrete choice) is the network's joint log-prob."""
    be = TorchBackend(net)
    h, code_logits = be.encode(inputs)
    s = sample_chunk(h, code_logits, be.head, np.random.default_rng(0), temperature=1.0, top_p=1.0)
    np.testing.assert_allclose(s.logp_sample, s.logp_model, rtol=1e-6)  # T=1, no top-p: the same distribution
    x = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        joint = net.log_prob(x, torch.from_numpy(s.base), torch.from_numpy(s.deltas), torch.from_numpy(s.code))
        marginal = net.log_prob(x, torch.from_numpy(s.base), torch.from_numpy(s.deltas))
    np.testing.assert_allclose(joint.numpy(), s.logp_model, rtol=1e-4, atol=1e-3)
    assert (marginal.numpy() >= joint.numpy() - 1e-4).all()


def test_sample_categorical_matches_its_distribution():
    rng = np.random.default_rng(0)
    logits = np.array([2.0, 1.0, 0.0, -1.0, -3.0])
    for temperature, top_p in ((1.0, 1.0), (0.5, 1.0), (1.0, 0.8)):
        p = np.exp(sampling_log_probs(logits, temperature, top_p))
        draws, lp_s, lp_m = sample_categorical(np.tile(logits, (40000, 1)), rng, temperature, top_p)
        freq = np.bincount(draws, minlength=5) / len(draws)
        np.testing.assert_allclose(freq, p, atol=0.01)
        np.testing.assert_allclose(lp_s, np.log(p[draws]), rtol=1e-5)
        np.testing.assert_allclose(lp_m, logits[draws] - np.log(np.exp(logits).sum()), rtol=1e-5)
    # top-p 0.8 with probabilities .64 .24 .09 ...: keeps exactly the first two classes.
    assert np.isfinite(sampling_log_probs(logits, 1.0, 0.8)).sum() == 2


def test_top_p_prefilter_draws_the_same_classes_as_the_full_nucleus():
    """The top-32 shortcut must pick exactly what sampling over all 256 classes picks."""
    rng = np.random.default_rng(3)
    for scale in (0.05, 1.0, 3.0, 8.0):
        logits = rng.normal(0, scale, (4, 55, 256))
        a = sample_categorical(logits, np.random.default_rng(1), 0.8, 0.9)
        b = sample_categorical(logits, np.random.default_rng(1), 0.8, 0.9, prefilter=256)
        assert np.array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-5)


def test_diversity_and_greedy_determinism(net, inputs):
    be = TorchBackend(net)
    h, c = be.encode({k: v[:1] for k, v in inputs.items()})
    samples = [sample_chunk(h, c, be.head, np.random.default_rng(s), temperature=1.0, top_p=0.95) for s in range(6)]
    bases = {s.base.tobytes() for s in samples}
    assert len(bases) == 6  # six seeds, six different chunks
    greedy = [sample_chunk(h, c, be.head, np.random.default_rng(s), temperature=0.0) for s in range(3)]
    assert all(np.array_equal(g.base, greedy[0].base) and np.array_equal(g.deltas, greedy[0].deltas) for g in greedy)
    assert (greedy[0].logp_sample == 0).all()
    # Greedy takes the most likely code, then the argmax of every token given that code.
    assert greedy[0].code[0] == np.argmax(c[0])
    b, _ = be.head(h, greedy[0].code)
    assert np.array_equal(greedy[0].base[0], b[0].argmax(-1))


def test_token_temperature_applies_to_tokens_only(net, inputs):
    be = TorchBackend(net)
    h, c = be.encode({k: v[:1] for k, v in inputs.items()})
    codes = set()
    for seed in range(12):
        s = sample_chunk(h, c, be.head, np.random.default_rng(seed), temperature=1.0, token_temperature=0.0)
        codes.add(int(s.code[0]))
        b, d = be.head(h, s.code)
        assert np.array_equal(s.base[0], b[0].argmax(-1)) and np.array_equal(s.deltas[0], d[0].argmax(-1))
    assert len(codes) > 1  # the code is still sampled


def test_per_channel_token_temperature(net, inputs):
    be = TorchBackend(net)
    h, c = be.encode({k: v[:1] for k, v in inputs.items()})
    eyelids = [ex.EXPRESSION_NAMES.index("eyeBlinkLeft"), ex.EXPRESSION_NAMES.index("eyeBlinkRight")]
    others = np.setdiff1d(np.arange(ex.DIM), eyelids)
    temps = np.zeros(ex.DIM)
    temps[eyelids] = 1.0
    eyelid_draws = set()
    for seed in range(12):
        s = sample_chunk(h, c, be.head, np.random.default_rng(seed), temperature=1.0, token_temperature=temps)
        b, d = be.head(h, s.code)
        assert np.array_equal(s.base[0, others], b[0, others].argmax(-1))
        assert np.array_equal(s.deltas[0][:, others], d[0][:, others].argmax(-1))
        eyelid_draws.add(tuple(s.base[0, eyelids]) + tuple(s.deltas[0][:, eyelids].ravel()))
    assert len(eyelid_draws) > 1
    # One value for every channel is the scalar case, draw for draw.
    a = sample_chunk(h, c, be.head, np.random.default_rng(5), temperature=1.0, token_temperature=np.full(ex.DIM, 0.5))
    b_ = sample_chunk(h, c, be.head, np.random.default_rng(5), temperature=1.0, token_temperature=0.5)
    assert np.array_equal(a.base, b_.base) and np.array_equal(a.deltas, b_.deltas)
    np.testing.assert_allclose(a.logp_sample, b_.logp_sample)
    with pytest.raises(ValueError, match="per channel"):
        sample_chunk(h, c, be.head, np.random.default_rng(0), token_temperature=np.ones(3))


def test_code_bias_steers_the_draw_but_not_the_model_log_prob(net, inputs):
    be = TorchBackend(net)
    h, c = be.encode({k: v[:1] for k, v in inputs.items()})
    rare = int(np.argmin(c[0]))
    bias = np.zeros_like(c)
    bias[0, rare] = 50.0
    s = sample_chunk(h, c, be.head, np.random.default_rng(0), temperature=1.0, code_bias=bias)
    assert s.code[0] == rare
    b, d = be.head(h, s.code)

    def log_p(logits: np.ndarray, idx: np.ndarray) -> float:
        return float(np.take_along_axis(sampling_log_probs(logits, 1.0, 1.0), idx[..., None], -1).sum())

    expected = sampling_log_probs(c, 1.0, 1.0)[0, rare] + log_p(b, s.base) + log_p(d, s.deltas)
    np.testing.assert_allclose(s.logp_model[0], expected, rtol=1e-5)


def test_tied_channels_share_every_token(net, inputs):
    be = TorchBackend(net)
    h, c = be.encode({k: v[:1] for k, v in inputs.items()})
    eyelids = [ex.EXPRESSION_NAMES.index("eyeBlinkLeft"), ex.EXPRESSION_NAMES.index("eyeBlinkRight")]
    for seed in range(6):
        s = sample_chunk(h, c, be.head, np.random.default_rng(seed), temperature=1.0, token_temperature=0.7,
                         tied=eyelids)
        assert s.base[0, eyelids[0]] == s.base[0, eyelids[1]]
        assert np.array_equal(s.deltas[0][:, eyelids[0]], s.deltas[0][:, eyelids[1]])
        b, d = be.head(h, s.code)
        model = (sampling_log_probs(c, 1.0, 1.0)[0, s.code[0]]
                 + np.take_along_axis(sampling_log_probs(b, 1.0, 1.0), s.base[..., None], -1).sum()
                 + np.take_along_axis(sampling_log_probs(d, 1.0, 1.0), s.deltas[..., None], -1).sum())
        np.testing.assert_allclose(s.logp_model[0], model, rtol=1e-5)
    temps = np.full(ex.DIM, 0.5)
    temps[eyelids[0]] = 1.0
    with pytest.raises(ValueError, match="share one token temperature"):
        sample_chunk(h, c, be.head, np.random.default_rng(0), token_temperature=temps, tied=eyelids)


def test_given_uniforms_are_inverse_cdf_draws():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]] * 5, np.float32))
    u = np.array([0.05, 0.15, 0.35, 0.65, 0.95])
    choice, lp_s, lp_m = sample_categorical(logits, np.random.default_rng(0), 1.0, uniforms=u)
    np.testing.assert_array_equal(choice, [0, 1, 2, 3, 3])
    np.testing.assert_allclose(lp_s, np.log([0.1, 0.2, 0.3, 0.4, 0.4]), rtol=1e-5)
    np.testing.assert_allclose(lp_m, lp_s, rtol=1e-5)  # temperature 1, no top-p: the model itself
    # Nearby uniforms give nearby classes: the draw is monotone in u.
    sweep, _, _ = sample_categorical(np.tile(logits[:1], (50, 1)), np.random.default_rng(0), 0.7,
                                     uniforms=np.linspace(0, 0.999, 50))
    assert (np.diff(sweep) >= 0).all() and sweep[0] == 0 and sweep[-1] == 3
    with pytest.raises(ValueError, match="uniforms"):
        sample_categorical(logits, np.random.default_rng(0), 1.0, uniforms=np.full(5, 1.0))
    with pytest.raises(ValueError, match="uniforms"):
        sample_categorical(logits, np.random.default_rng(0), 1.0, uniforms=np.full(4, 0.5))


def test_level_noise_is_uniform_correlated_and_yoked():
    partner = ex.yoked_partner()
    smile_l, smile_r = ex.index("mouthSmileLeft"), ex.index("mouthSmileRight")
    blink = ex.index("eyeBlinkLeft")
    noise = LevelNoise.for_plans(1.0, 4 / 30, partner, fresh=[blink, ex.index("eyeBlinkRight")])
    rng = np.random.default_rng(0)
    u = np.array([noise.next(rng) for _ in range(20000)])
    assert ((u >= 0) & (u < 1)).all()
    # Every channel's numbers are uniform on their own (each draw follows the model's distribution)...
    hist = np.stack([np.histogram(u[:, j], bins=10, range=(0, 1))[0] for j in range(ex.DIM)]) / len(u)
    assert np.abs(hist - 0.1).max() < 0.02
    # ...consecutive plans are correlated as exp(-dt / tau), eyelids not at all, and yoked sides agree.
    lag1 = [np.corrcoef(u[:-1, j], u[1:, j])[0, 1] for j in (smile_l, blink)]
    assert lag1[0] > 0.8 and abs(lag1[1]) < 0.05
    np.testing.assert_array_equal(u[:, smile_l], u[:, smile_r])
    assert np.abs(np.corrcoef(u[:, smile_l], u[:, ex.index("jawOpen")])[0, 1]) < 0.1
    with pytest.raises(ValueError, match="rho"):
        LevelNoise(np.full(ex.DIM, 1.0), partner)


def test_base_uniforms_set_the_levels_and_keep_log_probs_exact(net, inputs):
    be = TorchBackend(net)
    h, c = be.encode({k: v[:1] for k, v in inputs.items()})
    low = sample_chunk(h, c, be.head, np.random.default_rng(0), temperature=1.0, token_temperature=0.7,
                       base_uniforms=np.full((1, ex.DIM), 0.01))
    high = sample_chunk(h, c, be.head, np.random.default_rng(0), temperature=1.0, token_temperature=0.7,
                        base_uniforms=np.full((1, ex.DIM), 0.99))
    assert low.code[0] == high.code[0]  # the code's draw is untouched
    varied = high.base[0] != low.base[0]
    assert varied.sum() > 40 and (high.base[0] >= low.base[0]).all()
    b, d = be.head(h, high.code)
    model = (sampling_log_probs(c, 1.0, 1.0)[0, high.code[0]]
             + np.take_along_axis(sampling_log_probs(b, 1.0, 1.0), high.base[..., None], -1).sum()
             + np.take_along_axis(sampling_log_probs(d, 1.0, 1.0), high.deltas[..., None], -1).sum())
    np.testing.assert_allclose(high.logp_model[0], model, rtol=1e-5)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="'d_model'"):
        PolicyConfig(d_model=100, n_heads=3)
    with pytest.raises(ValueError, match="'window'"):
        PolicyConfig(window=0)
    with pytest.raises(ValueError, match="unknown config field"):
        PolicyConfig.from_dict({"windw": 3})
    with pytest.raises(ValueError, match="'history_delay'"):
        PolicyConfig(history_delay=-1)
    # A model saved before history_delay existed saw its history up to the previous frame.
    with pytest.raises(ValueError, match="'persona_dim'.*retrain"):
        PolicyConfig.from_dict({"window": 16})  # saved before personas existed
    assert PolicyConfig.from_dict({"window": 16, "persona_dim": 4}).history_delay == 0
    assert PolicyConfig.from_dict(PolicyConfig().to_dict()).history_delay == PolicyConfig().history_delay == 8
