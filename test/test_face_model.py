"""The face model: topology, neutral, basis, determinism, trace I/O."""

from __future__ import annotations

import numpy as np
import pytest

from face_expr_ros.expression import ARKIT_BLENDSHAPES, N_BLENDSHAPES, index
from face_expr_ros.rig import topology as topo
from face_expr_ros.rig.basis import UNOBSERVED, build_basis, mirror_field
from face_expr_ros.rig.model import build_model, load_model, read_stored
from face_expr_ros.rig.pose import pose_from_rotation, rotation_from_pose, umeyama


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_shapes(model):
    assert model.neutral.shape == (468, 3)
    assert model.basis.shape == (N_BLENDSHAPES, 468, 3)
    assert model.triangles.shape == (852, 3)
    assert np.isfinite(model.basis).all() and np.isfinite(model.neutral).all()


def test_triangles_valid_and_oriented(model):
    t = model.triangles
    assert t.min() >= 0 and t.max() < 468
    assert all(len(set(row)) == 3 for row in t.tolist())
    assert len({tuple(sorted(r)) for r in t.tolist()}) == len(t)
    # Consistent orientation: every interior edge is used once in each direction.
    directed = [(int(a), int(b)) for r in t for a, b in ((r[0], r[1]), (r[1], r[2]), (r[2], r[0]))]
    assert len(set(directed)) == len(directed)
    # Outward normals: towards the camera (+z) for most of the frontal face.
    v = model.neutral
    n = np.cross(v[t[:, 1]] - v[t[:, 0]], v[t[:, 2]] - v[t[:, 0]])
    assert (n[:, 2] > 0).mean() > 0.85
    # Every vertex is used; the mesh has an outer loop and three holes (eyes, mouth).
    assert len(np.unique(t)) == 468
    assert set(topo.boundary_loops()) == {"oval", "mouth", "eye_left", "eye_right"}


def test_neutral_is_symmetric_and_metric(model):
    v = model.neutral
    assert np.allclose(v[model.mirror] * np.array([-1, 1, 1]), v, atol=1e-9)
    d = np.linalg.norm(v[topo.EYE_OUTER_LEFT] - v[topo.EYE_OUTER_RIGHT])
    assert d == pytest.approx(90.0, abs=1.0)
    # Person's left is +x, up is +y, nose points at the camera.
    assert v[topo.EYE_OUTER_LEFT, 0] > 0 > v[topo.EYE_OUTER_RIGHT, 0]
    assert v[topo.FOREHEAD_TOP, 1] > v[topo.CHIN, 1]
    assert v[topo.NOSE_TIP, 2] > v[topo.CHEEK_SIDE_LEFT, 2]
    # The neutral's lips are closed and its mouth corners level with the seam (no smile).
    assert abs(v[topo.UPPER_LIP_INNER, 1] - v[topo.LOWER_LIP_INNER, 1]) < 0.5
    seam = 0.5 * (v[topo.UPPER_LIP_INNER, 1] + v[topo.LOWER_LIP_INNER, 1])
    assert abs(v[topo.MOUTH_CORNER_LEFT, 1] - seam) < 0.5


def test_basis_regenerates_to_float_rounding(model):
    stored = read_stored()
    rebuilt = build_model(stored.neutral, stored.mirror)
    # Not bit for bit: the last bits of numpy's vectorised sums depend on the CPU (measured 1e-14 mm
    # apart on a Xeon whose kernels differ from the machine that wrote the file).
    np.testing.assert_allclose(rebuilt.basis, stored.basis, rtol=0, atol=1e-10)
    assert np.array_equal(rebuilt.triangles, stored.triangles)
    assert np.array_equal(rebuilt.stable_vertices, stored.stable_vertices)


def test_channel_coverage(model):
    observed = set(model.observed_channels())
    required = [
        "eyeBlinkLeft", "eyeWideLeft", "eyeSquintLeft", "browDownLeft", "browOuterUpLeft", "browInnerUp",
        "jawOpen", "jawLeft", "jawRight", "jawForward", "mouthClose", "mouthSmileLeft", "mouthFrownLeft",
        "mouthStretchLeft", "mouthPressLeft", "mouthDimpleLeft", "mouthPucker", "mouthFunnel", "mouthLeft",
        "mouthRight", "mouthRollUpper", "mouthRollLower", "mouthShrugUpper", "mouthShrugLower",
        "cheekSquintLeft", "cheekPuff", "noseSneerLeft", "mouthUpperUpLeft", "mouthLowerDownLeft",
    ]
    for name in required:
        assert name in observed, name
        if name.endswith("Left"):
            assert name[:-4] + "Right" in observed
    assert observed | set(UNOBSERVED) == set(ARKIT_BLENDSHAPES)
    assert not observed & set(UNOBSERVED)


def test_left_right_fields_are_mirror_images(model):
    for name in ("mouthSmileLeft", "eyeBlinkLeft", "browDownLeft", "jawLeft", "mouthLeft"):
        right = name[:-4] + "Right"
        assert np.allclose(model.basis[index(right)], mirror_field(model.basis[index(name)], model.mirror))


def test_fields_move_the_right_way(model):
    b, v = model.basis, model.neutral
    assert b[index("jawOpen"), topo.CHIN, 1] < -10  # chin drops
    assert abs(b[index("jawOpen"), topo.UPPER_LIP_INNER]).max() < 1.0  # upper lip stays
    assert b[index("mouthSmileLeft"), topo.MOUTH_CORNER_LEFT, 1] > 3  # left corner up
    assert abs(b[index("mouthSmileLeft"), topo.MOUTH_CORNER_RIGHT]).max() < 0.5  # right corner still
    assert b[index("mouthFrownRight"), topo.MOUTH_CORNER_RIGHT, 1] < -3
    gap = v[topo.UPPER_LID_LEFT, 1] - v[topo.LOWER_LID_LEFT, 1]
    moved = b[index("eyeBlinkLeft"), topo.UPPER_LID_LEFT, 1] - b[index("eyeBlinkLeft"), topo.LOWER_LID_LEFT, 1]
    assert moved == pytest.approx(-gap, rel=0.05)  # the eye closes exactly at weight 1
    assert b[index("browInnerUp"), 336, 1] > 4 and b[index("browInnerUp"), 107, 1] > 4
    assert b[index("mouthPucker"), topo.UPPER_LIP_OUTER, 2] > 4  # lips forward
    assert b[index("jawLeft"), topo.CHIN, 0] > 3  # towards the person's left (+x)
    for name in UNOBSERVED:
        assert not np.any(b[index(name)])


def test_build_basis_is_deterministic(model):
    a = build_basis(model.neutral, model.mirror)
    b = build_basis(model.neutral.copy(), model.mirror.copy())
    assert np.array_equal(a, b)


@pytest.mark.parametrize("pose", [(0.0, 0.0, 0.0), (0.3, -0.2, 0.1), (-0.5, 0.9, -0.4)])
def test_pose_round_trip(pose):
    assert np.allclose(pose_from_rotation(rotation_from_pose(*pose)), pose, atol=1e-12)


def test_pose_sign_conventions(model):
    nose = np.array([0.0, 0.0, 1.0])
    assert (rotation_from_pose(0.0, 0.3, 0.0) @ nose)[0] > 0  # yaw > 0: towards the person's left
    assert (rotation_from_pose(0.3, 0.0, 0.0) @ nose)[1] < 0  # pitch > 0: chin (and nose) down
    assert (rotation_from_pose(0.0, 0.0, 0.3) @ np.array([0.0, 1.0, 0.0]))[0] > 0  # roll: top to the left


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 3))
    r = rotation_from_pose(0.2, -0.4, 0.1)
    y = 2.5 * x @ r.T + np.array([1.0, -2.0, 3.0])
    s = umeyama(x, y)
    assert s.scale == pytest.approx(2.5)
    assert np.allclose(s.rotation, r)
    assert np.allclose(s.invert(y), x)


def test_trace_io_round_trip(tmp_path):
    from face_expr_ros.rig.trace_io import HEADER, read_trace, write_trace

    rng = np.random.default_rng(1)
    frames = rng.uniform(0, 1, (7, 55)).astype(np.float32)
    t = np.arange(7) / 30.0
    write_trace(tmp_path / "t.csv", t, frames, np.full(7, 0.9), [1, 1, 0, 1, 1, 1, 1])
    first = (tmp_path / "t.csv").read_text().splitlines()[0].split(",")
    assert tuple(first) == HEADER
    tr = read_trace(tmp_path / "t.csv")
    assert np.allclose(tr.frames, frames, atol=1e-5)
    assert tr.face_present.tolist() == [True, True, False, True, True, True, True]
    assert tr.fps == pytest.approx(30.0, rel=1e-3)
    (tmp_path / "bad.csv").write_text("time,jawOpen\n0,1\n")
    with pytest.raises(ValueError, match="lacks expression column"):
        read_trace(tmp_path / "bad.csv")
