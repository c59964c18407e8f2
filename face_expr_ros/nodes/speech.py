"""Speech node: microphone PCM in; audio features (every 30 Hz frame) and recognised words out.

``/face_expr/audio_features`` carries one frame per message as a stamped ``JointState`` whose
names and values are the policy's input layout (``learning.dataset.network_audio_features``:
log-mel, scaled energy and pitch, voicing, VAD); the stamp is the frame's time in the audio
stream. ``/face_expr/transcript`` carries the words recognised since the last message,
space-separated, for people and other nodes; ``/face_expr/words`` carries the same words as a
``JointState`` (name = word, position = the word's end time in seconds on the node's clock,
stamp = the last word's end), which the policy uses to apply words in audio time.
Recognition runs in its own thread, so a slow decoder never delays the features.

PCM messages carry no stamp, so the stream's start time is taken when the first chunk
arrives (its arrival time minus its duration), snapped to the 30 Hz frame grid so that the
same recording gives the same stamps on every replay.
"""

from __future__ import annotations

import queue
import threading

import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import JointState
from std_msgs.msg import Int16MultiArray, String

from face_expr_ros import config, messages
from face_expr_ros.expression import FPS
from face_expr_ros.learning.dataset import audio_feature_names, network_audio_features
from face_expr_ros.nodes import base


class SpeechNode(Node):
    def __init__(self, **node_kwargs: object) -> None:
        super().__init__("speech", **node_kwargs)
        s = self.settings = base.declare_settings(self, config.SpeechSettings)
        from face_expr_ros.perception.audio_features import StreamingAudioFeatures

        self.features = StreamingAudioFeatures(s.sample_rate)
        self.report = base.ReportOnce(self)
        self.meter = base.RateMeter()
        self.words = 0
        self.feature_names = audio_feature_names(self.features.config.n_mels)
        self.stream_start_ns: int | None = None
        self.frames_out = 0
        self.feature_pub = self.create_publisher(JointState, s.features_topic, base.STATE_QOS)
        self.transcript_pub = self.create_publisher(String, s.transcript_topic, base.STATE_QOS)
        self.words_pub = self.create_publisher(JointState, s.words_topic, base.STATE_QOS)
        self.create_subscription(Int16MultiArray, s.audio_topic, self.on_audio, base.AUDIO_QOS)
        self._asr_queue: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=500)
        self._asr_thread: threading.Thread | None = None
        if s.asr_backend != "none":
            from face_expr_ros.perception.asr import make_recognizer

            try:
                recognizer = make_recognizer(s.asr_backend, model_dir=s.vosk_model_dir or None,
                                             sample_rate=s.sample_rate)
            except (ValueError, OSError, ImportError) as err:
                raise config.ConfigError(f"node speech: asr_backend {s.asr_backend!r}: {err}") from None
            self._asr_thread = threading.Thread(target=self._recognise, args=(recognizer,), daemon=True)
            self._asr_thread.start()
        self.diagnostics = base.Diagnostics(self, s.diagnostics_period_s, self.update_diagnostics)
        self.get_logger().info(f"listening on {s.audio_topic} at {s.sample_rate} Hz, ASR {s.asr_backend}")

    def on_audio(self, msg: Int16MultiArray) -> None:
        try:
            pcm = messages.pcm_from_msg(msg)
        except messages.MessageError as err:
            self.report("bad_audio", f"dropping audio from {self.settings.audio_topic}: {err}", key=str(err))
            return
        if pcm.size == 0:
            return
        if self.stream_start_ns is None:
            start = self.get_clock().now().nanoseconds - pcm.size / self.settings.sample_rate * 1e9
            self.stream_start_ns = int(round(start / 1e9 * FPS) / FPS * 1e9)
        frames = self.features.push(pcm)
        if frames.n_frames:
            layout = network_audio_features(frames.log_mel, frames.rms_db, frames.f0_hz, frames.voiced_prob,
                                            frames.vad)
            for row in layout:
                out = JointState(name=self.feature_names, position=row.astype(float).tolist())
                out.header.stamp = Time(nanoseconds=self._stream_ns(self.frames_out / FPS)).to_msg()
                self.feature_pub.publish(out)
                self.frames_out += 1
                self.meter.tick()
        if self._asr_thread is not None:
            try:
                self._asr_queue.put_nowait(pcm)
            except queue.Full:
                self.report("asr_overrun", "speech recogniser cannot keep up: dropping audio for it")

    def _recognise(self, recognizer: object) -> None:
        while True:
            pcm = self._asr_queue.get()
            if pcm is None:
                words = recognizer.final()
            else:
                words = recognizer.accept(pcm)
            if words:
                self.words += len(words)
                self.transcript_pub.publish(String(data=" ".join(w.text for w in words)))
                timed = JointState(name=[w.text for w in words],
                                   position=[self._stream_ns(w.end) / 1e9 for w in words])
                timed.header.stamp = Time(nanoseconds=self._stream_ns(words[-1].end)).to_msg()
                self.words_pub.publish(timed)
            if pcm is None:
                return

    def _stream_ns(self, seconds: float) -> int:
        """A time in the audio stream (seconds from its start) on the node's clock."""
        return int((self.stream_start_ns or 0) + seconds * 1e9)

    def update_diagnostics(self) -> None:
        self.diagnostics.set(feature_rate_hz=f"{self.meter.rate_hz():.1f}", feature_frames=self.meter.count,
                             words=self.words, asr=self.settings.asr_backend,
                             **{f"dropped_{k}": v for k, v in self.report.counts.items()})

    def destroy_node(self) -> None:
        if self._asr_thread is not None and self._asr_thread.is_alive():
            self._asr_queue.put(None)
            self._asr_thread.join(timeout=2.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return base.run_node(SpeechNode, args)
