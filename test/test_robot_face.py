"""Robot face map: safety limits under arbitrary input, config validation, direction of motion."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from face_expr_ros import expression
from face_expr_ros.robot.face_map import FaceMapError, RobotFaceMap

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "config" / "robot_faces" / "generic_servo_face.yaml"
EPS = 1e-9


def example_data() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "face.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def frame(**values: float) -> np.ndarray:
    return expression.from_dict(values)


# ----------------------------------------------------------------- safety properties
special = st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 1e6, -1e6, 0.0, 1.0, -1.0])
value = st.one_of(st.floats(allow_nan=True, allow_infinity=True), special)
good_frame = st.lists(value, min_size=expression.DIM, max_size=expression.DIM)
bad_frame = st.one_of(
    st.lists(value, min_size=0, max_size=70).filter(lambda v: len(v) != expression.DIM),
    st.just("not a frame"),
    st.just(None),
    st.just([[1.0, 2.0], [3.0]]),
)
dt_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, -1.0, 1e-12, 1 / 30, 1.0, 1e9, math.nan, math.inf]),
)
steps = st.lists(st.tuples(st.one_of(good_frame, good_frame, good_frame, bad_frame), dt_value), max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seq=steps)
def test_commands_never_leave_position_or_velocity_limits(seq):
    face = RobotFaceMap.from_yaml(EXAMPLE)
    prev = face.command
    for x, dt in seq:
        cmd = face.step(x, dt)
        assert cmd.shape == (len(face.joint_names),)
        assert np.isfinite(cmd).all()
        assert (cmd >= face.lower - EPS).all() and (cmd <= face.upper + EPS).all()
        if isinstance(dt, float) and math.isfinite(dt) and dt > 0:
            allowed = face.max_velocity * min(dt, face.max_dt)
        else:
            allowed = np.zeros_like(cmd)  # a bad dt must hold the position exactly
        assert (np.abs(cmd - prev) <= allowed + EPS).all(), (x, dt, cmd - prev, allowed)
        prev = cmd


def test_bad_dt_and_bad_frames_hold_position():
    face = RobotFaceMap.from_yaml(EXAMPLE)
    smile = frame(mouthSmileLeft=1.0, mouthSmileRight=1.0, jawOpen=1.0)
    for _ in range(10):
        face.step(smile, 1 / 30)
    held = face.command
    for dt in (0.0, -0.1, math.nan, math.inf, -math.inf, "x"):
        np.testing.assert_array_equal(face.step(expression.NEUTRAL, dt), held)
    before = face.rejected_inputs
    for bad in ([1.0, 2.0], np.zeros(54), "abc", None):
        np.testing.assert_array_equal(face.step(bad, 1 / 30), held)
    assert face.rejected_inputs == before + 4
    assert "values" in face.last_rejection or "numeric" in face.last_rejection


def test_nan_channel_holds_its_last_value():
    face = RobotFaceMap.from_yaml(EXAMPLE)
    jaw = face.joint_names.index("jaw")
    for _ in range(60):
        face.step(frame(jawOpen=0.8), 1 / 30)
    opened = face.command[jaw]
    assert opened == pytest.approx(0.4, abs=1e-3)
    lost = frame(jawOpen=0.8)
    lost[expression.index("jawOpen")] = np.nan
    for _ in range(30):
        cmd = face.step(lost, 1 / 30)
    assert cmd[jaw] == pytest.approx(opened, abs=1e-6)


def test_huge_dt_is_capped_and_reset_restores_default():
    face = RobotFaceMap.from_yaml(EXAMPLE)
    pan = face.joint_names.index("neck_pan")
    cmd = face.step(frame(headYaw=1.3), 1e6)
    assert cmd[pan] == pytest.approx(face.max_velocity[pan] * face.max_dt)
    face.reset()
    np.testing.assert_array_equal(face.command, face.default)


def test_smile_raises_both_lip_corners_and_frown_lowers_them():
    face = RobotFaceMap.from_yaml(EXAMPLE)
    left, right = face.joint_names.index("lip_corner_left"), face.joint_names.index("lip_corner_right")
    for _ in range(30):
        cmd = face.step(frame(mouthSmileLeft=1.0, mouthSmileRight=1.0), 1 / 30)
    # Documented in the YAML: lip_corner_* > 0 pulls the corner up (smile).
    assert cmd[left] > 0.4 and cmd[right] > 0.4
    others = [i for i in range(len(cmd)) if i not in (left, right)]
    np.testing.assert_allclose(cmd[others], face.default[others])
    face.reset()
    for _ in range(30):
        cmd = face.step(frame(mouthFrownLeft=1.0, mouthFrownRight=1.0), 1 / 30)
    assert cmd[left] < -0.3 and cmd[right] < -0.3
    face.reset()
    cmd = face.target(frame(mouthSmileLeft=1.0))
    assert cmd[left] > 0.0 and cmd[right] == 0.0  # one-sided smile stays on its own side


def test_step_to_default_is_rate_limited():
    face = RobotFaceMap.from_yaml(EXAMPLE)
    for _ in range(60):
        face.step(frame(jawOpen=1.0, headYaw=1.0), 1 / 30)
    prev = face.command
    for _ in range(200):
        cmd = face.step_to_default(1 / 30)
        assert (np.abs(cmd - prev) <= face.max_velocity / 30 + EPS).all()
        prev = cmd
    np.testing.assert_allclose(cmd, face.default, atol=1e-6)


def test_example_loads_with_expected_joints():
    face = RobotFaceMap.from_yaml(EXAMPLE)
    assert face.joint_names[:7] == (
        "brow_left", "brow_right", "upper_lid_left", "upper_lid_right", "jaw", "lip_corner_left",
        "lip_corner_right",
    )
    assert face.units == "rad"
    assert face.weights.shape == (len(face.joint_names), expression.DIM)


# ----------------------------------------------------------------- configuration errors
def mutate(tmp_path: Path, change) -> Path:
    data = copy.deepcopy(example_data())
    change(data)
    return write(tmp_path, data)


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda d: d["actuators"][4].update(gain=2.0), ["'jaw'", "'gain'", "unknown key"]),
        (lambda d: d["actuators"][0].update(max_velo=1.0), ["'brow_left'", "max_velocity"]),
        (lambda d: d.update(actuator=[]), ["unknown top-level key", "'actuator'"]),
        (lambda d: d["actuators"][4].update(min=0.5, max=0.5), ["'jaw'", "'min'", "smaller than max"]),
        (lambda d: d["actuators"][4].update(min=1.0, max=0.5), ["'jaw'", "'min'"]),
        (lambda d: d["actuators"][1].update(max_velocity=-1.0), ["'brow_right'", "'max_velocity'", "> 0"]),
        (lambda d: d["actuators"][1].update(max_velocity=0), ["'brow_right'", "'max_velocity'"]),
        (
            lambda d: d["actuators"][5]["weights"].update(mouthSmileLft=1.0),
            ["'lip_corner_left'", "'weights'", "mouthSmileLft", "mouthSmileLeft"],
        ),
        (lambda d: d["actuators"][2].update(default=5.0), ["'upper_lid_left'", "'default'"]),
        (lambda d: d["actuators"][2].pop("default"), ["'upper_lid_left'", "missing", "'default'"]),
        (lambda d: d["actuators"][2].update(smoothing_time_constant=-1), ["'smoothing_time_constant'"]),
        (lambda d: d["actuators"][2].update(max=".5"), ["'upper_lid_left'", "'max'", "number"]),
        (lambda d: d["actuators"][2].update(max=float("nan")), ["'upper_lid_left'", "'max'", "finite"]),
        (lambda d: d["actuators"][3].update(name="upper_lid_left"), ["duplicate", "'upper_lid_left'"]),
        (lambda d: d.update(actuators=[]), ["'actuators'", "non-empty"]),
        (lambda d: d.update(max_dt=0), ["'max_dt'"]),
    ],
)
def test_config_errors_name_file_actuator_and_key(tmp_path, change, fragments):
    path = mutate(tmp_path, change)
    with pytest.raises(FaceMapError) as info:
        RobotFaceMap.from_yaml(path)
    msg = str(info.value)
    assert str(path) in msg
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FaceMapError, match="cannot read"):
        RobotFaceMap.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("actuators: [\n")
    with pytest.raises(FaceMapError, match="not valid YAML"):
        RobotFaceMap.from_yaml(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n")
    with pytest.raises(FaceMapError, match="top level"):
        RobotFaceMap.from_yaml(top)


def test_face_map_error_is_a_value_error():
    assert issubclass(FaceMapError, ValueError)
