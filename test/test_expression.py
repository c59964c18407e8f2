import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from face_expr_ros import expression as ex


def test_order_and_size():
    assert ex.DIM == 55 and ex.N_BLENDSHAPES == 52
    assert ex.EXPRESSION_NAMES[0] == "eyeBlinkLeft"
    assert ex.EXPRESSION_NAMES[51] == "tongueOut"
    assert ex.EXPRESSION_NAMES[52:] == ("headPitch", "headYaw", "headRoll")
    assert len(set(ex.EXPRESSION_NAMES)) == 55
    # Spot checks against Apple's ARFaceAnchor.BlendShapeLocation order.
    assert ex.index("jawOpen") == 17
    assert ex.index("mouthSmileLeft") == 23
    assert ex.index("browInnerUp") == 43
    assert ex.index("noseSneerRight") == 50


def test_every_left_has_a_right():
    lefts = [n for n in ex.ARKIT_BLENDSHAPES if n.endswith("Left")]
    rights = [n for n in ex.ARKIT_BLENDSHAPES if n.endswith("Right")]
    assert sorted(n[:-4] for n in lefts) == sorted(n[:-5] for n in rights)


def test_ranges():
    assert np.all(ex.LOWER[:52] == 0) and np.all(ex.UPPER[:52] == 1)
    assert np.all(ex.LOWER[52:] < 0) and np.all(ex.UPPER[52:] > 0)
    assert ex.is_valid(ex.NEUTRAL)


def test_clamp_maps_nan_and_inf_to_neutral_and_clips():
    frame = np.full(55, 0.5, dtype=np.float32)
    frame[0], frame[1], frame[2], frame[3] = np.nan, np.inf, -np.inf, 7.0
    frame = frame.astype(np.float64)
    frame[4] = 1e300
    frame[ex.index("headYaw")] = 10.0
    frame[ex.index("headPitch")] = np.nan
    out = ex.clamp(frame)
    assert out.dtype == np.float32
    assert out[0] == 0 and out[1] == 0 and out[2] == 0
    assert out[3] == 1.0 and out[4] == 1.0
    assert out[ex.index("headYaw")] == pytest.approx(ex.UPPER[ex.index("headYaw")])
    assert out[ex.index("headPitch")] == 0.0
    assert ex.is_valid(out)
    assert np.isnan(frame[0]), "clamp must not modify its input"


def test_clamp_batches_and_rejects_wrong_shape():
    batch = np.random.default_rng(0).normal(0, 3, size=(4, 7, 55))
    out = ex.clamp(batch)
    assert out.shape == (4, 7, 55) and ex.is_valid(out)
    with pytest.raises(ValueError, match="55"):
        ex.clamp(np.zeros(54))
    with pytest.raises(ValueError, match="55"):
        ex.clamp(3.0)


@given(arrays(np.float64, (3, 55), elements=st.floats(allow_nan=True, allow_infinity=True)))
def test_clamp_always_valid(values):
    assert ex.is_valid(ex.clamp(values))


def test_is_valid_rejects_out_of_range_and_nan():
    frame = ex.NEUTRAL.copy()
    frame[5] = 1.5
    assert not ex.is_valid(frame)
    frame[5] = np.nan
    assert not ex.is_valid(frame)
    assert not ex.is_valid(np.zeros(10))


def test_dict_round_trip():
    frame = ex.clamp(np.random.default_rng(1).uniform(-1, 1, 55))
    mapping = ex.to_dict(frame)
    assert list(mapping) == list(ex.EXPRESSION_NAMES)
    np.testing.assert_array_equal(ex.from_dict(mapping, strict=True), frame)
    np.testing.assert_array_equal(ex.from_named(list(mapping), list(mapping.values())), frame)


def test_from_dict_defaults_missing_to_neutral_and_rejects_unknown():
    frame = ex.from_dict({"jawOpen": 0.4})
    assert frame[ex.index("jawOpen")] == pytest.approx(0.4)
    assert frame.sum() == pytest.approx(0.4)
    with pytest.raises(KeyError, match="did you mean jawOpen"):
        ex.from_dict({"jawOpn": 0.4})
    with pytest.raises(KeyError, match="missing"):
        ex.from_dict({"jawOpen": 0.4}, strict=True)
    with pytest.raises(ValueError, match="2 names but 1 values"):
        ex.from_named(["jawOpen", "eyeBlinkLeft"], [0.1])
    with pytest.raises(KeyError, match="unknown expression channel"):
        ex.index("smile")


def test_mirror_swaps_sides_and_is_an_involution():
    frame = ex.from_dict({"mouthSmileLeft": 0.9, "eyeBlinkRight": 0.3, "jawLeft": 0.2, "headYaw": 0.1})
    mirrored = ex.mirror(frame)
    assert mirrored[ex.index("mouthSmileRight")] == pytest.approx(0.9)
    assert mirrored[ex.index("mouthSmileLeft")] == 0
    assert mirrored[ex.index("eyeBlinkLeft")] == pytest.approx(0.3)
    assert mirrored[ex.index("jawRight")] == pytest.approx(0.2)
    assert mirrored[ex.index("headYaw")] == pytest.approx(-0.1)
    np.testing.assert_array_equal(ex.mirror(mirrored), frame)


def test_yoked_partners_pair_the_sides_and_the_eyes_not_the_antagonists():
    partner = ex.yoked_partner()
    name = ex.EXPRESSION_NAMES
    assert (partner[partner] == np.arange(ex.DIM)).all()  # an involution: pairs, or itself
    assert name[partner[ex.index("mouthSmileLeft")]] == "mouthSmileRight"
    assert name[partner[ex.index("browDownRight")]] == "browDownLeft"
    # Conjugate gaze: looking to one side turns the left eye in and the right eye out.
    assert name[partner[ex.index("eyeLookInLeft")]] == "eyeLookOutRight"
    assert name[partner[ex.index("eyeLookOutLeft")]] == "eyeLookInRight"
    for alone in ("jawLeft", "jawRight", "mouthLeft", "mouthRight", "jawOpen", "headYaw", "tongueOut"):
        assert partner[ex.index(alone)] == ex.index(alone)
    assert sum(partner != np.arange(ex.DIM)) == 36
