"""Bags written with rosbags read back with rosbags and with mcap's own ROS 2 decoder."""

import numpy as np
import pytest

from face_expr_ros import bags, messages
from face_expr_ros import expression as ex


def write_sample(path, storage):
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
    frame = ex.clamp(rng.uniform(-1, 1, ex.DIM))
    pcm = rng.integers(-3000, 3000, size=533, dtype=np.int16)
    with bags.BagWriter(path, storage=storage) as bag:
        bag.write("/camera/image_raw", bags.image_message(1_000, image), t_ns=1_000)
        bag.write("/audio/pcm", bags.pcm_message(pcm), t_ns=2_000)
        bag.write("/face_expr/speaker_expression", bags.joint_state_message(3_000, frame), t_ns=3_000)
        bag.write("/face_expr/transcript", bags.string_message("hello there"), t_ns=4_000)
    return image, frame, pcm


@pytest.mark.parametrize("storage", bags.STORAGES)
def test_round_trip_with_rosbags(tmp_path, storage):
    image, frame, pcm = write_sample(tmp_path / "bag", storage)
    assert bags.bag_topics(tmp_path / "bag") == {
        "/camera/image_raw": bags.IMAGE, "/audio/pcm": bags.INT16_ARRAY,
        "/face_expr/speaker_expression": bags.JOINT_STATE, "/face_expr/transcript": bags.STRING,
    }
    got = list(bags.read_bag(tmp_path / "bag"))
    assert [m.t_ns for m in got] == [1_000, 2_000, 3_000, 4_000]
    np.testing.assert_array_equal(messages.image_to_bgr(got[0].msg), image)
    assert messages.stamp_to_ns(got[0].msg.header.stamp) == 1_000
    np.testing.assert_array_equal(messages.pcm_from_msg(got[1].msg), pcm)
    np.testing.assert_allclose(messages.expression_from_joint_state(got[2].msg), frame, atol=1e-6)
    assert got[3].msg.data == "hello there"
    only = list(bags.read_bag(tmp_path / "bag", topics=["/face_expr/transcript"]))
    assert len(only) == 1


def test_mcap_reads_with_mcap_ros2_decoder(tmp_path):
    image, frame, _ = write_sample(tmp_path / "bag", "mcap")
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    mcap_file = next((tmp_path / "bag").glob("*.mcap"))
    with mcap_file.open("rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        decoded = {ch.topic: msg for _, ch, _, msg in reader.iter_decoded_messages()}
    assert decoded["/face_expr/transcript"].data == "hello there"
    img = decoded["/camera/image_raw"]
    assert (img.height, img.width, img.encoding) == (48, 64, "bgr8")
    np.testing.assert_array_equal(np.frombuffer(bytes(img.data), np.uint8).reshape(48, 64, 3), image)
    js = decoded["/face_expr/speaker_expression"]
    assert list(js.name) == list(ex.EXPRESSION_NAMES)
    np.testing.assert_allclose(js.position, frame, atol=1e-6)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(bags.BagError, match="unknown bag storage 'zip'"):
        bags.BagWriter(tmp_path / "x", storage="zip")
    with pytest.raises(bags.BagError, match="bag not found"):
        list(bags.read_bag(tmp_path / "missing"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("not: a bag")
    with pytest.raises(bags.BagError, match="not a readable rosbag2 folder"):
        list(bags.read_bag(tmp_path / "junk"))
    write_sample(tmp_path / "bag", "sqlite3")
    with pytest.raises(bags.BagError, match=r"no topic\(s\) \['/nope'\]"):
        list(bags.read_bag(tmp_path / "bag", topics=["/nope"]))
    with pytest.raises(bags.BagError, match="already exists"):
        bags.BagWriter(tmp_path / "bag")


class FakeImage:
    """A plain object with sensor_msgs/Image fields (the conversions are duck-typed)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_image_conversions_and_encoding_errors():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 200  # red in RGB
    msg = FakeImage(height=2, width=3, encoding="rgb8", step=9, is_bigendian=0, data=rgb.tobytes())
    assert messages.image_to_bgr(msg)[0, 0].tolist() == [0, 0, 200]
    grey = FakeImage(height=2, width=3, encoding="mono8", step=4, is_bigendian=0, data=bytes(8))
    assert messages.image_to_bgr(grey).shape == (2, 3, 3)
    with pytest.raises(messages.MessageError, match="encoding 'yuv422' is not supported"):
        messages.image_to_bgr(FakeImage(height=2, width=3, encoding="yuv422", step=6, is_bigendian=0,
                                        data=bytes(12)))
    with pytest.raises(messages.MessageError, match="holds 5 bytes"):
        messages.image_to_bgr(FakeImage(height=2, width=3, encoding="bgr8", step=9, is_bigendian=0,
                                        data=bytes(5)))
    with pytest.raises(messages.MessageError, match="Image is empty"):
        messages.image_to_bgr(FakeImage(height=0, width=3, encoding="bgr8", step=9, is_bigendian=0,
                                        data=b""))


def test_joint_state_errors():
    bad = FakeImage(name=["jawOpen", "smile"], position=[0.1, 0.2])
    with pytest.raises(messages.MessageError, match="JointState.name: unknown expression channel"):
        messages.expression_from_joint_state(bad)
    with pytest.raises(messages.MessageError, match="2 names but 1 positions"):
        messages.expression_from_joint_state(FakeImage(name=["jawOpen", "jawLeft"], position=[0.1]))
    nan = FakeImage(name=["jawOpen"], position=[float("nan")])
    assert messages.expression_from_joint_state(nan)[ex.index("jawOpen")] == 0.0


def test_stamped_pcm_round_trip_and_errors(tmp_path):
    """Stamped PCM: a 16SC1 Image one pixel high, stamped at the chunk's end."""
    pcm = np.random.default_rng(5).integers(-32768, 32767, size=533, dtype=np.int16)
    with bags.BagWriter(tmp_path / "bag", storage="mcap") as bag:
        bag.write("/audio/pcm/stamped", bags.stamped_pcm_message(pcm, 2_033_312_500), t_ns=2_033_312_500)
    (got,) = list(bags.read_bag(tmp_path / "bag"))
    assert got.msgtype == bags.IMAGE
    assert (got.msg.encoding, got.msg.height, got.msg.width, got.msg.step) == ("16SC1", 1, 533, 1066)
    samples, end_ns = messages.pcm_from_stamped(got.msg)
    np.testing.assert_array_equal(samples, pcm)
    assert samples.dtype == np.int16 and end_ns == 2_033_312_500
    big = FakeImage(encoding="16SC1", height=1, width=3, is_bigendian=1,
                    data=np.array([1, -2, 300], ">i2").tobytes(), header=got.msg.header)
    assert messages.pcm_from_stamped(big)[0].tolist() == [1, -2, 300]
    with pytest.raises(messages.MessageError, match="16SC1 Image of height 1, got encoding 'bgr8'"):
        messages.pcm_from_stamped(FakeImage(encoding="bgr8", height=1, width=3, data=bytes(9)))
    with pytest.raises(messages.MessageError, match="holds 4 bytes, but width 3 needs 6"):
        messages.pcm_from_stamped(FakeImage(encoding="16SC1", height=1, width=3, is_bigendian=0, data=bytes(4)))
    with pytest.raises(messages.MessageError, match="1-d integer array"):
        bags.stamped_pcm_message(np.zeros((2, 2), np.int16), 0)
