"""ONNX export: static shapes except batch, and parity with PyTorch (logits and sampled tokens)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from face_expr_ros.policy.backends import OnnxRuntimeBackend, TorchBackend
from face_expr_ros.policy.export import ENCODER_FILE, HEAD_FILE, OPSET, parity_report, random_inputs
from face_expr_ros.policy.fixtures import make_policy
from face_expr_ros.policy.network import INPUT_NAMES
from face_expr_ros.policy.runtime import run_batch
from face_expr_ros.policy.sampling import sample_chunk


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return make_policy(tmp_path_factory.mktemp("onnx") / "policy", seed=4)


def test_graphs_have_static_shapes_except_batch(policy):
    net, _, path = policy
    shapes = net.cfg.input_shapes()
    model = onnx.load(str(path / ENCODER_FILE))
    assert model.opset_import[0].version >= OPSET
    for inp in model.graph.input:
        dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
        assert dims[0] == "batch" and tuple(dims[1:]) == shapes[inp.name], inp.name
    assert [i.name for i in model.graph.input] == list(INPUT_NAMES)
    head = onnx.load(str(path / HEAD_FILE))
    onnx.checker.check_model(head)
    for out in head.graph.output:
        dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
        assert dims[0] == "batch" and all(isinstance(d, int) and d > 0 for d in dims[1:])


@pytest.mark.parametrize("batch", [1, 5])
def test_logit_parity_within_1e4(policy, batch):
    net, _, path = policy
    report = parity_report(net, path, batch=batch, seed=batch)
    for key in ("h", "code_logits", "base_logits", "delta_logits"):
        assert report[key] < 1e-4, (key, report[key])
    assert report["same_tokens"]


def test_logits_are_not_trivially_close(policy):
    """Guard for the parity test: logits must spread, or a broken export could pass it."""
    net, _, _ = policy
    h, c = TorchBackend(net).encode(random_inputs(net.cfg, 2, seed=0))
    b, _ = TorchBackend(net).head(h, np.array([0, 1]))
    assert c.std() > 0.3 and b.std() > 1.0


def test_same_seed_same_chunks_on_both_backends(policy):
    net, tok, path = policy
    torch_be, ort_be = TorchBackend(net), OnnxRuntimeBackend(path)
    inputs = random_inputs(net.cfg, 4, seed=11)
    for temperature, top_p in ((1.0, 1.0), (0.8, 0.9)):
        kw = {"temperature": temperature, "top_p": top_p}
        a, sa = run_batch(torch_be, net.cfg, tok, inputs, np.random.default_rng(5), **kw)
        b, sb = run_batch(ort_be, net.cfg, tok, inputs, np.random.default_rng(5), **kw)
        assert np.array_equal(sa.base, sb.base) and np.array_equal(sa.deltas, sb.deltas)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(sa.logp_model, sb.logp_model, atol=1e-3)


def test_different_seeds_differ_on_onnxruntime(policy):
    net, _, path = policy
    be = OnnxRuntimeBackend(path)
    h, c = be.encode(random_inputs(net.cfg, 1, seed=3))
    tokens = {sample_chunk(h, c, be.head, np.random.default_rng(s), temperature=0.8, top_p=0.95).base.tobytes()
              for s in range(4)}
    assert len(tokens) == 4
