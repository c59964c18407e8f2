from pathlib import Path

import pytest

from face_expr_ros import config as cfg


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_default_file_is_valid_and_complete(repo_root):
    settings = cfg.load_all_settings(repo_root / "config" / "default.yaml")
    assert set(settings) == set(cfg.NODE_SCHEMAS)
    # The shipped file spells out every parameter of every node with the schema's default.
    sections = cfg.read_parameter_file(repo_root / "config" / "default.yaml")
    for node, schema in cfg.NODE_SCHEMAS.items():
        assert settings[node] == schema(), node
        own = set(sections[node]) | set(sections["/**"])
        assert own == {row[0] for row in cfg.describe_schema(schema)}, node


def test_values_wildcard_and_namespaces(tmp_path):
    path = write(tmp_path, """
/**:
  ros__parameters:
    use_sim_time: true
/robot1/policy:
  ros__parameters:
    rate_hz: 15
    backend: torch
""")
    policy = cfg.load_node_settings(path, "policy")
    assert policy.use_sim_time is True
    assert policy.rate_hz == 15.0 and isinstance(policy.rate_hz, float)
    assert policy.backend == "torch"
    assert cfg.load_node_settings(path, "face_tracker").use_sim_time is True


def test_missing_file(tmp_path):
    with pytest.raises(cfg.ConfigError, match="parameter file not found: .*nope.yaml"):
        cfg.load_node_settings(tmp_path / "nope.yaml", "policy")


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "policy:\n  ros__parameters:\n    rate_hz: [1, 2\n")
    with pytest.raises(cfg.ConfigError, match=r"params.yaml: not valid YAML at line \d+"):
        cfg.load_node_settings(path, "policy")


def test_missing_ros_parameters_key(tmp_path):
    path = write(tmp_path, "policy:\n  rate_hz: 10\n")
    with pytest.raises(cfg.ConfigError, match="node 'policy' must contain a 'ros__parameters' mapping"):
        cfg.load_node_settings(path, "policy")


def test_top_level_not_a_mapping(tmp_path):
    path = write(tmp_path, "- policy\n- avatar\n")
    with pytest.raises(cfg.ConfigError, match="expected a mapping of node names at the top level, got list"):
        cfg.load_all_settings(path)


def test_unknown_node(tmp_path):
    path = write(tmp_path, "polcy:\n  ros__parameters:\n    rate_hz: 10\n")
    with pytest.raises(cfg.ConfigError, match="unknown node 'polcy'; did you mean 'policy'"):
        cfg.load_all_settings(path)


def test_unknown_key_suggests(tmp_path):
    path = write(tmp_path, "policy:\n  ros__parameters:\n    rate_hzz: 10\n")
    with pytest.raises(cfg.ConfigError) as err:
        cfg.load_node_settings(path, "policy")
    message = str(err.value)
    assert "params.yaml: policy: unknown parameter 'rate_hzz'; did you mean 'rate_hz'?" in message
    assert "Allowed:" in message


def test_wrong_type(tmp_path):
    path = write(tmp_path, "policy:\n  ros__parameters:\n    rate_hz: fast\n")
    with pytest.raises(cfg.ConfigError, match="parameter 'rate_hz': expected a number, got str 'fast'"):
        cfg.load_node_settings(path, "policy")
    path = write(tmp_path, "avatar:\n  ros__parameters:\n    show_window: 1\n")
    with pytest.raises(cfg.ConfigError, match="'show_window': expected true or false, got int 1"):
        cfg.load_node_settings(path, "avatar")
    path = write(tmp_path, "avatar:\n  ros__parameters:\n    size: 512.5\n")
    with pytest.raises(cfg.ConfigError, match="'size': expected an integer, got float 512.5"):
        cfg.load_node_settings(path, "avatar")
    path = write(tmp_path, "speech:\n  ros__parameters:\n    audio_topic: 5\n")
    with pytest.raises(cfg.ConfigError, match="'audio_topic': expected a string, got int 5"):
        cfg.load_node_settings(path, "speech")


def test_out_of_range(tmp_path):
    path = write(tmp_path, "policy:\n  ros__parameters:\n    rate_hz: 500.0\n")
    with pytest.raises(cfg.ConfigError, match=r"'rate_hz': 500.0 is out of range; allowed \[1.0, 120.0\]"):
        cfg.load_node_settings(path, "policy")
    path = write(tmp_path, "policy:\n  ros__parameters:\n    temperature: .nan\n")
    with pytest.raises(cfg.ConfigError, match="expected a finite number"):
        cfg.load_node_settings(path, "policy")


def test_not_a_choice(tmp_path):
    path = write(tmp_path, "policy:\n  ros__parameters:\n    backend: onnx\n")
    expected = "'backend': 'onnx' is not one of: onnxruntime, torch, tensorrt"
    with pytest.raises(cfg.ConfigError, match=expected):
        cfg.load_node_settings(path, "policy")


def test_mapping_source_from_node_parameters():
    settings = cfg.settings_from_mapping(cfg.AvatarSettings, {"avatar": "mesh"}, "node avatar")
    assert settings.avatar == "mesh" and settings.size == 512
    with pytest.raises(cfg.ConfigError, match="^node avatar: parameter 'avatar'"):
        cfg.settings_from_mapping(cfg.AvatarSettings, {"avatar": "cartoon"}, "node avatar")


def test_empty_file_gives_defaults(tmp_path):
    path = write(tmp_path, "")
    assert cfg.load_node_settings(path, "policy") == cfg.PolicySettings()


def test_parameter_docs_are_up_to_date(repo_root, venv_bin):
    import subprocess

    script = repo_root / "scripts" / "gen_param_docs.py"
    done = subprocess.run([str(venv_bin / "python"), str(script), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_policy_node_defaults_are_the_runtime_defaults():
    """The policy node's sampling parameters are not a second set of defaults (config.py cannot
    import the runtime, which needs PyTorch, so the numbers are written twice and checked here)."""
    from face_expr_ros.policy import persona, runtime, sampling

    node = cfg.PolicySettings()
    assert (node.temperature, node.token_temperature, node.top_p) == (
        sampling.DEFAULT_TEMPERATURE, sampling.DEFAULT_TOKEN_TEMPERATURE, sampling.DEFAULT_TOP_P)
    assert (node.eyelid_temperature, node.gaze_temperature, node.head_temperature, node.code_persistence,
            node.level_noise_tau_s) == (
        sampling.DEFAULT_EYELID_TEMPERATURE, sampling.DEFAULT_GAZE_TEMPERATURE, sampling.DEFAULT_HEAD_TEMPERATURE,
        sampling.DEFAULT_CODE_PERSISTENCE, sampling.DEFAULT_LEVEL_NOISE_TAU_S)
    assert (node.replan_every, node.smoothing_s) == (runtime.DEFAULT_REPLAN_EVERY, runtime.DEFAULT_SMOOTHING_S)
    assert node.persona_spread == persona.DEFAULT_PERSONA_SPREAD
