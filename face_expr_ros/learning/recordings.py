"""Real recordings to dataset shards, through the same perception code the robot runs.

A recording is either files (a speaker video, its audio as WAV or inside the video, and
optionally a video of the listener) or a rosbag2 with a camera topic, an audio topic and
optionally a listener camera topic. Faces go through :class:`FaceTracker` (MediaPipe +
the 3DMM fit, with the running per-person neutral), audio through the streaming audio
features, and speech through the ASR back-end, exactly as in the nodes. Everything is
resampled onto the 30 Hz frame grid of the shards (frame k at k / 30 s).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import bags, media_io, messages
from face_expr_ros import expression as ex
from face_expr_ros.learning import shards
from face_expr_ros.perception import audio_features
from face_expr_ros.rig.trace_io import Trace


class FaceTrackBuilder:
    """Tracks frames as they come (time order) and collects a :class:`~face_expr_ros.rig.trace_io.Trace`."""

    def __init__(self) -> None:
        from face_expr_ros.perception.face_tracker import FaceTracker

        self._tracker = FaceTracker(channel_order="bgr")
        self._times: list[float] = []
        self._exprs: list[NDArray[np.float32]] = []
        self._present: list[bool] = []
        self._conf: list[float] = []

    def add(self, t: float, image_bgr: NDArray[np.uint8]) -> None:
        obs = self._tracker.process(image_bgr)
        self._times.append(t)
        self._exprs.append(obs.expression)
        self._present.append(obs.face_present)
        self._conf.append(obs.confidence)

    def result(self) -> Trace:
        if not self._times:
            raise ValueError("no video frames to track")
        return Trace(np.array(self._times), np.array(self._exprs, np.float32), np.array(self._conf, np.float32),
                     np.array(self._present))


def track_frames(frames: Iterable[tuple[float, NDArray[np.uint8]]], progress: str = "") -> Trace:
    """Run the face tracker over (time, BGR image) pairs in time order."""
    from tqdm import tqdm

    builder = FaceTrackBuilder()
    for t, image in tqdm(frames, desc=progress or "tracking", unit="frame", disable=not progress):
        builder.add(t, image)
    return builder.result()


def resample_track(track: Trace, n_frames: int, fps: float = ex.FPS) -> tuple[NDArray[np.float32],
                                                                                    NDArray[np.bool_]]:
    """Nearest earlier tracked frame for every grid frame (a face not yet seen is absent)."""
    grid = np.arange(n_frames) / fps
    idx = np.searchsorted(track.time, grid + 1e-6, side="right") - 1
    valid = idx >= 0
    expr = np.where(valid[:, None], track.frames[np.maximum(idx, 0)], ex.NEUTRAL)
    present = valid & track.face_present[np.maximum(idx, 0)]
    return ex.clamp(expr), present


def recognise(pcm: NDArray[np.int16], sample_rate: int, backend: str = "pocketsphinx",
              model_dir: str | None = None, chunk_s: float = 0.1) -> list[tuple[str, float, float]]:
    """Words with times, by streaming the audio through the ASR back-end in chunks, as live."""
    from face_expr_ros.perception.asr import make_recognizer

    recognizer = make_recognizer(backend, model_dir=model_dir, sample_rate=sample_rate)
    words = []
    step = max(1, int(chunk_s * sample_rate))
    for start in range(0, len(pcm), step):
        words += recognizer.accept(pcm[start:start + step])
    words += recognizer.final()
    return [(w.text, float(w.start), float(w.end)) for w in words]


def build_conversation(conversation_id: str, speaker: Trace, pcm: NDArray[np.int16], sample_rate: int,
                       listener: Trace | None = None, asr_backend: str = "pocketsphinx",
                       asr_model_dir: str | None = None, metadata: dict[str, Any] | None = None
                       ) -> shards.Conversation:
    """One shard from tracked faces and audio (the audio's length sets the duration)."""
    if pcm.size == 0:
        raise ValueError(f"{conversation_id}: the recording has no audio samples")
    duration = len(pcm) / sample_rate
    n = round(duration * ex.FPS)
    feats = audio_features.compute(pcm, sample_rate)
    words = recognise(pcm, sample_rate, asr_backend, asr_model_dir) if asr_backend != "none" else []
    speaker_expr, speaker_present = resample_track(speaker, n)
    if listener is not None:
        listener_expr, _ = resample_track(listener, n)
    else:
        listener_expr = np.zeros((n, ex.DIM), np.float32)

    def fit(values: NDArray[Any]) -> NDArray[Any]:
        return shards.fit_frames(values, n)

    arrays = {
        "speaker_expression": speaker_expr,
        "speaker_face_present": speaker_present,
        "listener_expression": listener_expr,
        "audio_logmel": fit(feats.log_mel.astype(np.float32)),
        "audio_energy": fit(feats.rms_db.astype(np.float32)),
        "audio_pitch": fit(feats.f0_hz.astype(np.float32)),
        "audio_voiced": fit(feats.voiced_prob.astype(np.float32)),
        "audio_vad": fit(feats.vad.astype(bool)),
        "words_heard": shards.words_heard_per_frame(words, n),
    }
    meta = {"source": "recording", "has_listener": listener is not None, "asr_backend": asr_backend,
            "duration_s": round(duration, 4), "speaker_face_fraction": round(float(speaker_present.mean()), 4),
            **(metadata or {})}
    return shards.Conversation(conversation_id, arrays, words, meta)


def video_frames(path: str | Path) -> Iterator[tuple[float, NDArray[np.uint8]]]:
    fps = media_io.video_fps(path) or ex.FPS
    for k, frame in enumerate(media_io.iter_video(path)):
        yield k / fps, frame


def from_files(conversation_id: str, speaker_video: str | Path, audio: str | Path | None = None,
               listener_video: str | Path | None = None, asr_backend: str = "pocketsphinx",
               asr_model_dir: str | None = None, progress: bool = True) -> shards.Conversation:
    """A shard from a speaker video (+ WAV, or the video's own sound) and an optional listener video."""
    if audio is None:
        with tempfile.TemporaryDirectory() as tmp:
            pcm, rate = media_io.read_wav(media_io.extract_audio(speaker_video, Path(tmp) / "audio.wav"))
    else:
        pcm, rate = media_io.read_wav(audio)
    speaker = track_frames(video_frames(speaker_video), "speaker video" if progress else "")
    listener = (track_frames(video_frames(listener_video), "listener video" if progress else "")
                if listener_video else None)
    return build_conversation(conversation_id, speaker, pcm, rate, listener, asr_backend, asr_model_dir,
                              {"speaker_video": str(speaker_video), "listener_video": str(listener_video or "")})


@dataclass(frozen=True)
class BagTopics:
    camera: str = "/camera/image_raw/compressed"
    audio: str = "/audio/pcm"
    listener_camera: str | None = None
    sample_rate: int = 16000


def _image_of(message: bags.BagMessage) -> NDArray[np.uint8]:
    if message.msgtype == bags.COMPRESSED_IMAGE:
        import cv2

        image = cv2.imdecode(np.frombuffer(bytes(message.msg.data), np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise messages.MessageError(f"{message.topic}: CompressedImage at t={message.t_ns} ns does not decode")
        return image
    return messages.image_to_bgr(message.msg)


def from_bag(conversation_id: str, bag: str | Path, topics: BagTopics = BagTopics(),
             asr_backend: str = "pocketsphinx", asr_model_dir: str | None = None,
             progress: bool = True) -> shards.Conversation:
    """A shard from a rosbag2 with camera and audio topics (times from the bag's receive stamps)."""
    available = bags.bag_topics(bag)
    wanted = [topics.camera, topics.audio] + ([topics.listener_camera] if topics.listener_camera else [])
    missing = [t for t in wanted if t not in available]
    if missing:
        raise bags.BagError(f"{bag}: topic(s) {missing} not in the bag; it has {sorted(available)}")
    from tqdm import tqdm

    start: int | None = None
    speaker, listener = FaceTrackBuilder(), FaceTrackBuilder()
    chunks: list[NDArray[np.int16]] = []
    # Frames are tracked as they are read, so a long bag never sits in memory as images.
    for message in tqdm(bags.read_bag(bag, wanted), desc="bag messages", unit="msg", disable=not progress):
        start = message.t_ns if start is None else start
        t = (message.t_ns - start) / 1e9
        if message.topic == topics.audio:
            chunks.append(messages.pcm_from_msg(message.msg))
        elif message.topic == topics.camera:
            speaker.add(t, _image_of(message))
        else:
            listener.add(t, _image_of(message))
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    listener_track = listener.result() if topics.listener_camera else None
    return build_conversation(conversation_id, speaker.result(), pcm, topics.sample_rate, listener_track,
                              asr_backend, asr_model_dir, {"bag": str(bag)})


def write_single(folder: str | Path, conv: shards.Conversation, split: str = "train") -> shards.Manifest:
    """Add one built conversation to a dataset folder (created if needed) and rewrite its manifest."""
    folder = Path(folder)
    try:
        manifest = shards.read_manifest(folder)
    except shards.ShardError:
        manifest = shards.Manifest({"command": "face-expr data build", "schema_version": shards.SCHEMA_VERSION})
    _, digest = shards.write_conversation(folder, conv)
    manifest.conversations = [c for c in manifest.conversations if c["id"] != conv.conversation_id]
    manifest.conversations.append({"id": conv.conversation_id, "split": split, "sha256": digest,
                                   "style": "recorded", "duration_s": conv.metadata.get("duration_s", 0.0)})
    shards.write_manifest(folder, manifest)
    return manifest
