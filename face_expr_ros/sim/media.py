"""A generated conversation as the robot would receive it: video, sound and rosbags.

The speaker's expression track is rendered with the photo avatar into camera frames
(640x480 by default), the speech is written as WAV, and both go into rosbag2 files
(sqlite3 and/or mcap) on the topics of the node graph, next to ground-truth topics:

| topic | type | content |
|---|---|---|
| ``/camera/image_raw/compressed`` (or ``/camera/image_raw``) | CompressedImage (JPEG) / Image | speaker camera, 30 Hz |
| ``/audio/pcm`` | std_msgs/Int16MultiArray | speech, 16 kHz mono, 32 ms chunks |
| ``/face_expr/ground_truth/speaker_expression`` | sensor_msgs/JointState | the rendered speaker frame |
| ``/face_expr/ground_truth/listener_expression`` | sensor_msgs/JointState | the listener style's frame |
| ``/face_expr/ground_truth/transcript`` | std_msgs/String | each word, at its end time |

Ground truth lives under its own namespace so that a replay through the graph never collides
with what the tracker and the policy publish.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import bags, media_io
from face_expr_ros.expression import FPS
from face_expr_ros.sim.conversation import Conversation

CAMERA_TOPIC = "/camera/image_raw"
AUDIO_TOPIC = "/audio/pcm"
GT_SPEAKER_TOPIC = "/face_expr/ground_truth/speaker_expression"
GT_LISTENER_TOPIC = "/face_expr/ground_truth/listener_expression"
GT_TRANSCRIPT_TOPIC = "/face_expr/ground_truth/transcript"
AUDIO_CHUNK = 512  # samples per /audio/pcm message: 32 ms at 16 kHz


@dataclass
class MediaFiles:
    folder: Path
    video: Path
    wav: Path
    video_with_sound: Path | None = None
    bags: dict[str, Path] = field(default_factory=dict)


def camera_frames(track: NDArray[np.float32], size_wh: tuple[int, int] = (640, 480),
                  photo: str | Path | None = None) -> Iterator[NDArray[np.uint8]]:
    """BGR camera frames of the photo avatar performing ``track`` (T x 55), letterboxed to size."""
    import cv2

    from face_expr_ros.rig.render import PhotoRenderer

    width, height = size_wh
    side = min(width, height)
    renderer = PhotoRenderer(photo, size=side)
    for frame in track:
        rgb = renderer.render(frame)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if (width, height) != (side, side):
            left, top = (width - side) // 2, (height - side) // 2
            bgr = cv2.copyMakeBorder(bgr, top, height - side - top, left, width - side - left,
                                     cv2.BORDER_REFLECT)
        yield bgr


def write_media(conv: Conversation, folder: str | Path, storages: tuple[str, ...] = ("sqlite3", "mcap"),
                size_wh: tuple[int, int] = (640, 480), compressed: bool = True, mux: bool = True,
                photo: str | Path | None = None, progress: bool = True,
                max_seconds: float | None = None) -> MediaFiles:
    """Render the speaker video, write the WAV, and write one bag per storage format.

    ``max_seconds`` keeps only the start of the conversation (for quick looks and tests).
    """
    from tqdm import tqdm

    if conv.audio is None:
        raise ValueError(f"conversation {conv.seed} has no audio: generate it with with_audio=True")
    if max_seconds is not None:
        conv = truncate(conv, max_seconds)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rate = conv.timeline.sample_rate
    files = MediaFiles(folder, folder / "speaker.mp4", media_io.write_wav(folder / "speech.wav", conv.audio, rate))
    writers = {s: bags.BagWriter(folder / f"bag_{s}", storage=s) for s in storages}
    for writer in writers.values():
        writer.__enter__()
    try:
        timed = _timed_messages(conv, rate)
        next_timed = next(timed, None)
        with media_io.VideoWriter(files.video, FPS, size_wh) as video:
            frames = camera_frames(conv.speaker_track, size_wh, photo)
            for k, image in enumerate(tqdm(frames, total=len(conv.speaker_track), desc="rendering speaker",
                                           unit="frame", disable=not progress)):
                t_ns = round(k / FPS * 1e9)
                # Audio and ground truth up to this frame go first, so the bag is in time order.
                while next_timed is not None and next_timed[2] <= t_ns:
                    for writer in writers.values():
                        writer.write(*next_timed)
                    next_timed = next(timed, None)
                video.write(image)
                camera = (bags.compressed_image_message(t_ns, image) if compressed
                          else bags.image_message(t_ns, image))
                for writer in writers.values():
                    writer.write(CAMERA_TOPIC + ("/compressed" if compressed else ""), camera, t_ns)
            while next_timed is not None:
                for writer in writers.values():
                    writer.write(*next_timed)
                next_timed = next(timed, None)
    finally:
        for writer in writers.values():
            writer.__exit__(None, None, None)
    files.bags = {s: w.path for s, w in writers.items()}
    if mux:
        files.video_with_sound = media_io.mux_audio(files.video, files.wav, folder / "speaker_with_sound.mp4")
    return files


def truncate(conv: Conversation, seconds: float) -> Conversation:
    """The first ``seconds`` of a conversation: tracks, audio and words that end in time."""
    n = min(len(conv.speaker_track), max(1, round(seconds * FPS)))
    duration = n / FPS
    timeline = replace(
        conv.timeline, duration_s=duration,
        words=[w for w in conv.timeline.words if w.end <= duration],
        utterances=[u for u in conv.timeline.utterances if u.start < duration],
        pauses=[p for p in conv.timeline.pauses if p.start < duration],
        audio=None if conv.audio is None else conv.audio[: round(duration * conv.timeline.sample_rate)],
    )
    return replace(conv, timeline=timeline, speaker_track=conv.speaker_track[:n],
                   listener_track=conv.listener_track[:n])


def _timed_messages(conv: Conversation, rate: int) -> Iterator[tuple[str, object, int]]:
    """(topic, message, t_ns) for audio chunks, ground-truth frames and words, in time order."""
    events: list[tuple[int, int, str, object]] = []
    audio = conv.audio if conv.audio is not None else np.zeros(0, np.int16)
    for start in range(0, len(audio), AUDIO_CHUNK):
        chunk = audio[start:start + AUDIO_CHUNK]
        # A chunk is published when its last sample has been captured.
        t_ns = round((start + len(chunk)) / rate * 1e9)
        events.append((t_ns, 0, AUDIO_TOPIC, bags.pcm_message(chunk)))
    for k in range(len(conv.speaker_track)):
        t_ns = round(k / FPS * 1e9)
        events.append((t_ns, 1, GT_SPEAKER_TOPIC, bags.joint_state_message(t_ns, conv.speaker_track[k])))
        events.append((t_ns, 2, GT_LISTENER_TOPIC, bags.joint_state_message(t_ns, conv.listener_track[k])))
    for word in conv.timeline.words:
        events.append((round(word.end * 1e9), 3, GT_TRANSCRIPT_TOPIC, bags.string_message(word.word)))
    events.sort(key=lambda e: (e[0], e[1]))
    for t_ns, _, topic, msg in events:
        yield topic, msg, t_ns
