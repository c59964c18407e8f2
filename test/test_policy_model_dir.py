"""Policy directories: round trip, and clear errors for every way a directory or input can be bad."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from face_expr_ros.policy.export import random_inputs
from face_expr_ros.policy.fixtures import make_policy, synthetic_actions
from face_expr_ros.policy.model_dir import (
    MANIFEST_FILE,
    PolicyFileError,
    PolicyInputError,
    check_inputs,
    load_policy,
)
from face_expr_ros.policy.persona import PersonaSpace
from face_expr_ros.policy.runtime import Observation, Policy
from face_expr_ros.policy.tokenizer import ActionTokenizer


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return make_policy(tmp_path_factory.mktemp("md") / "policy", seed=2)


@pytest.fixture()
def copy(saved, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(saved[2], dst)
    return dst


def test_round_trip(saved):
    net, tok, path = saved
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["model.safetensors", "config.json", "tokenizer.json", "persona.npz", "policy.onnx", "policy_head.onnx",
         "manifest.json"])
    bundle = load_policy(path)
    assert bundle.tokenizer.sha256 == tok.sha256 and bundle.config == net.cfg
    for k, v in net.state_dict().items():
        assert torch.equal(bundle.net.state_dict()[k], v), k


def test_missing_model_file(copy):
    (copy / "model.safetensors").unlink()
    with pytest.raises(PolicyFileError, match="missing file model.safetensors"):
        load_policy(copy)


def test_missing_onnx_only_matters_for_onnx(copy):
    (copy / "policy_head.onnx").unlink()
    with pytest.raises(PolicyFileError, match="missing file policy_head.onnx"):
        load_policy(copy)
    load_policy(copy, need_onnx=False)


def test_corrupt_model_file(copy):
    data = bytearray((copy / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(PolicyFileError, match=r"model.safetensors: sha256 differs"):
        load_policy(copy)


def test_truncated_model_file_even_with_a_matching_manifest(copy):
    """A file that is corrupt at write time (manifest made from it) still fails on its own terms."""
    (copy / "model.safetensors").write_bytes(b"\x00\x01garbage")
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    from face_expr_ros.policy.export import file_sha256

    manifest["files"]["model.safetensors"] = file_sha256(copy / "model.safetensors")
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(PolicyFileError, match="model.safetensors: not a readable safetensors"):
        load_policy(copy)


def _rewrite_with_manifest(folder, name, text):
    """Replace ``name`` (with ``text``; None keeps what is there) and update its manifest hash."""
    from face_expr_ros.policy.export import file_sha256

    if text is not None:
        (folder / name).write_text(text)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["files"][name] = file_sha256(folder / name)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_tokenizer_that_does_not_match_the_model(copy):
    other = ActionTokenizer.fit(synthetic_actions(seed=99))
    other.save(copy / "tokenizer.json")
    _rewrite_with_manifest(copy, "tokenizer.json", (copy / "tokenizer.json").read_text())
    with pytest.raises(PolicyFileError, match=r"tokenizer.json.*'tokenizer_sha256'.*config.json"):
        load_policy(copy)


def test_bad_config_field(copy):
    config = json.loads((copy / "config.json").read_text())
    config["architecture"]["n_heads"] = 7
    _rewrite_with_manifest(copy, "config.json", json.dumps(config))
    with pytest.raises(PolicyFileError, match=r"config.json: field 'architecture'.*'d_model'"):
        load_policy(copy)


def test_model_of_another_input_layout_is_refused(copy):
    # A model trained before the pause input became the VAD's silence clock had `since_word`.
    config = json.loads((copy / "config.json").read_text())
    config["inputs"]["since_word"] = config["inputs"].pop("silence")
    _rewrite_with_manifest(copy, "config.json", json.dumps(config))
    with pytest.raises(PolicyFileError, match=r"config.json: field 'inputs' names .*'since_word'.*retrain"):
        load_policy(copy)


def test_config_and_weights_disagree(copy):
    config = json.loads((copy / "config.json").read_text())
    config["architecture"]["d_ff"] = 64
    _rewrite_with_manifest(copy, "config.json", json.dumps(config))
    with pytest.raises(PolicyFileError, match=r"model.safetensors: tensor 'blocks.0.ff.0.weight' has shape"):
        load_policy(copy)


def test_corrupt_or_mismatched_persona_file(copy):
    (copy / "persona.npz").write_bytes(b"not a zip")
    _rewrite_with_manifest(copy, "persona.npz", None)
    with pytest.raises(PolicyFileError, match=r"persona.npz: not a readable persona file"):
        load_policy(copy)
    PersonaSpace.neutral(3).save(copy / "persona.npz")
    _rewrite_with_manifest(copy, "persona.npz", None)
    with pytest.raises(PolicyFileError, match=r"persona.npz: persona dim 3, field 'persona_dim'"):
        load_policy(copy)


def test_missing_manifest_and_dir(copy, tmp_path):
    (copy / MANIFEST_FILE).unlink()
    with pytest.raises(PolicyFileError, match="missing file manifest.json"):
        load_policy(copy)
    with pytest.raises(PolicyFileError, match="policy directory not found"):
        load_policy(tmp_path / "nowhere")


def test_network_input_errors_name_the_field(saved):
    cfg = saved[0].cfg
    good = random_inputs(cfg, 2)
    check_inputs(good, cfg)
    bad = dict(good, audio=good["audio"][:, :, :40])
    with pytest.raises(PolicyInputError, match=r"input 'audio' has shape \(2, 32, 40\), expected \(batch, 32, 44\)"):
        check_inputs(bad, cfg)
    nan = dict(good, speaker=good["speaker"].copy())
    nan["speaker"][0, 3, 5] = np.nan
    with pytest.raises(PolicyInputError, match="input 'speaker' contains NaN"):
        check_inputs(nan, cfg)
    with pytest.raises(PolicyInputError, match="'text' has batch 1"):
        check_inputs(dict(good, text=good["text"][:1]), cfg)


def test_observation_errors_name_the_field(saved):
    policy = Policy.load(saved[2], "onnxruntime")
    with pytest.raises(PolicyInputError, match=r"observation.speaker_expression has shape \(52,\)"):
        policy.step(Observation(speaker_expression=np.zeros(52)))
    with pytest.raises(PolicyInputError, match="observation.audio_features contains NaN"):
        policy.step(Observation(audio_features=np.full(44, np.nan)))
    with pytest.raises(PolicyInputError, match="observation.text_embedding"):
        policy.step(Observation(text_embedding=np.zeros(10)))
