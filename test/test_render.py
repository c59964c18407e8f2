"""Avatar renderers: output shape/dtype, expression and pose really change the picture."""

from __future__ import annotations

import numpy as np
import pytest

from face_expr_ros.expression import from_dict
from face_expr_ros.rig import topology as topo
from face_expr_ros.rig.render import MeshRenderer, PhotoRenderer, make_renderer


@pytest.fixture(scope="module")
def mesh():
    return MeshRenderer()


@pytest.fixture(scope="module")
def photo():
    return PhotoRenderer()


@pytest.mark.parametrize("kind", ["mesh", "photo"])
def test_output_shape_and_dtype(kind, mesh, photo):
    r = mesh if kind == "mesh" else photo
    img = r.render(from_dict({"jawOpen": 0.5, "headYaw": 0.2}))
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8
    assert img.std() > 10  # not blank


def test_size_option():
    img = MeshRenderer(size=256).render(np.zeros(55, np.float32))
    assert img.shape == (256, 256, 3)


def test_rejects_wrong_frame_shape(mesh):
    with pytest.raises(ValueError, match="55"):
        mesh.render(np.zeros(52))


def test_non_finite_frame_renders_neutral(mesh):
    bad = np.full(55, np.nan, np.float32)
    assert np.array_equal(mesh.render(bad), mesh.render(np.zeros(55, np.float32)))


@pytest.mark.parametrize("kind", ["mesh", "photo"])
def test_jaw_open_darkens_mouth_region(kind, mesh, photo):
    r = mesh if kind == "mesh" else photo
    neutral = r.render(from_dict({})).astype(float)
    opened = r.render(from_dict({"jawOpen": 1.0})).astype(float)
    # Mouth centre in the output: where the inner lips project at jawOpen 1.
    if kind == "mesh":
        v = r.vertices(from_dict({"jawOpen": 1.0}))
        c = r.framing.project(v[topo.boundary_loops()["mouth"]]).mean(axis=0)
    else:
        tgt, _ = r.target_points(from_dict({"jawOpen": 1.0}))
        c = tgt[topo.boundary_loops()["mouth"]].mean(axis=0)
    x, y = int(c[0]), int(c[1])
    patch = (slice(y - 4, y + 4), slice(x - 4, x + 4))
    assert opened[patch].mean() < neutral[patch].mean() - 30


def test_photo_neutral_removes_the_smile(photo):
    from face_expr_ros.expression import index

    assert photo.photo_weights[index("mouthSmileLeft")] > 0.2
    assert photo.photo_weights[index("mouthSmileRight")] > 0.2


def test_head_yaw_moves_nose_towards_persons_left(mesh, photo):
    f = from_dict({"headYaw": 0.4})
    v = mesh.vertices(f)
    p = mesh.framing.project(v)
    p0 = mesh.framing.project(mesh.vertices(from_dict({})))
    assert p[topo.NOSE_TIP, 0] > p0[topo.NOSE_TIP, 0] + 10  # image right = person's left
    tgt, _ = photo.target_points(f)
    tgt0, _ = photo.target_points(from_dict({}))
    assert tgt[topo.NOSE_TIP, 0] > tgt0[topo.NOSE_TIP, 0] + 10


def test_photo_background_stays_put(photo):
    a = photo.render(from_dict({})).astype(float)
    b = photo.render(from_dict({"headYaw": 0.35, "jawOpen": 1.0})).astype(float)
    # The image border (background) does not move; the face does.
    for corner in (a[:12, :12] - b[:12, :12], a[:12, -12:] - b[:12, -12:], a[-12:, :12] - b[-12:, :12]):
        assert np.abs(corner).mean() < 1.0
    assert np.abs(a - b).mean() > 2.0


def test_make_renderer_kinds():
    assert isinstance(make_renderer("mesh", size=64), MeshRenderer)
    with pytest.raises(ValueError, match="mesh"):
        make_renderer("cartoon")


def test_photo_without_face_is_rejected():
    with pytest.raises(ValueError, match="no face"):
        PhotoRenderer(np.full((240, 320, 3), 128, np.uint8))


def test_photo_blink_closes_the_lids_over_skin(photo):
    """At eyeBlink 1 the lid margins meet and the closed eye shows lid skin, not the dark iris."""
    from face_expr_ros.expression import index

    closed = from_dict({"eyeBlinkLeft": 1.0, "eyeBlinkRight": 1.0})
    tgt, _ = photo.target_points(closed)
    assert abs(tgt[topo.UPPER_LID_LEFT, 1] - tgt[topo.LOWER_LID_LEFT, 1]) < 1.5
    assert abs(tgt[topo.UPPER_LID_RIGHT, 1] - tgt[topo.LOWER_LID_RIGHT, 1]) < 1.5
    # Lid unfolding: the closing upper lid samples lid skin from higher up the photo.
    src0, src1 = photo.source_points(from_dict({})), photo.source_points(closed)
    assert src1[topo.UPPER_LID_LEFT, 1] < src0[topo.UPPER_LID_LEFT, 1] - 1.0  # photo y grows downwards
    assert np.array_equal(src0, photo.src)
    open_img = photo.render(from_dict({})).astype(float)
    shut_img = photo.render(closed).astype(float)
    tgt0, _ = photo.target_points(from_dict({}))
    for lid_up, lid_lo in ((topo.UPPER_LID_LEFT, topo.LOWER_LID_LEFT), (topo.UPPER_LID_RIGHT, topo.LOWER_LID_RIGHT)):
        c = 0.5 * (tgt0[lid_up] + tgt0[lid_lo])
        x, y = int(c[0]), int(c[1])
        patch = (slice(y - 3, y + 4), slice(x - 3, x + 4))
        assert shut_img[patch].mean() > open_img[patch].mean() + 25  # iris gone, skin there
    assert index("eyeBlinkLeft") in photo._lid_channel
