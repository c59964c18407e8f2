"""A generated conversation rendered to video, WAV and bags, and read back as the robot would."""

import shutil

import numpy as np
import pytest

from face_expr_ros import bags, media_io, messages
from face_expr_ros import expression as ex
from face_expr_ros.learning import recordings
from face_expr_ros.sim import media
from face_expr_ros.sim.conversation import generate_conversation

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    conv = generate_conversation(11, with_audio=True)
    folder = tmp_path_factory.mktemp("media")
    files = media.write_media(conv, folder / "c11", max_seconds=4.0, progress=False)
    return media.truncate(conv, 4.0), files


def test_files_exist_and_agree(rendered):
    _, files = rendered
    frames = list(media_io.iter_video(files.video))
    assert len(frames) == 120 and frames[0].shape == (480, 640, 3)
    pcm, rate = media_io.read_wav(files.wav)
    assert rate == 16000 and len(pcm) == 4 * 16000
    assert files.video_with_sound is not None and files.video_with_sound.stat().st_size > 10_000


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_reads_back_with_rosbags(rendered, storage):
    conv, files = rendered
    topics = bags.bag_topics(files.bags[storage])
    assert topics == {
        "/camera/image_raw/compressed": bags.COMPRESSED_IMAGE, "/audio/pcm": bags.INT16_ARRAY,
        media.GT_SPEAKER_TOPIC: bags.JOINT_STATE, media.GT_LISTENER_TOPIC: bags.JOINT_STATE,
        media.GT_TRANSCRIPT_TOPIC: bags.STRING,
    }
    got = list(bags.read_bag(files.bags[storage]))
    assert [m.t_ns for m in got] == sorted(m.t_ns for m in got), "bag is in time order"
    audio = np.concatenate([messages.pcm_from_msg(m.msg) for m in got if m.topic == "/audio/pcm"])
    np.testing.assert_array_equal(audio, conv.audio)
    truth = [messages.expression_from_joint_state(m.msg) for m in got if m.topic == media.GT_SPEAKER_TOPIC]
    np.testing.assert_allclose(np.array(truth), conv.speaker_track, atol=1e-6)
    words = [m.msg.data for m in got if m.topic == media.GT_TRANSCRIPT_TOPIC]
    assert words == [w.word for w in conv.timeline.words]
    assert sum(m.topic == "/camera/image_raw/compressed" for m in got) == 120


def test_mcap_bag_reads_with_mcap_decoder(rendered):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    _, files = rendered
    with next(files.bags["mcap"].glob("*.mcap")).open("rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        counts: dict[str, int] = {}
        for _, channel, _, msg in reader.iter_decoded_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            if channel.topic == media.GT_SPEAKER_TOPIC:
                assert list(msg.name) == list(ex.EXPRESSION_NAMES)
    assert counts["/camera/image_raw/compressed"] == 120 and counts[media.GT_LISTENER_TOPIC] == 120


def test_build_from_bag_tracks_the_rendered_speaker(rendered):
    conv, files = rendered
    shard = recordings.from_bag("c11", files.bags["sqlite3"], asr_backend="none", progress=False)
    assert shard.n_frames == 120
    assert shard.arrays["speaker_face_present"].mean() > 0.95
    # Head pose is the most robust channel: the tracker follows the rendered head.
    for name in ("headYaw", "headPitch"):
        i = ex.index(name)
        err = np.abs(shard.arrays["speaker_expression"][:, i] - conv.speaker_track[:, i]).mean()
        assert np.rad2deg(err) < 4.0, name
