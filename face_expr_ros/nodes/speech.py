"""Speech node: microphone PCM in; audio features (every 30 Hz frame) and recognised words out.

``/face_expr/audio_features`` carries one frame per message in the policy's input layout
(``learning.dataset.network_audio_features``: log-mel, scaled energy and pitch, voicing, VAD).
``/face_expr/transcript`` carries the words recognised since the last message, space-separated.
Recognition runs in its own thread, so a slow decoder never delays the features.
"""

from __future__ import annotations

import queue
import threading

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Float32MultiArray, Int16MultiArray, String

from face_expr_ros import config, messages
from face_expr_ros.learning.dataset import network_audio_features
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
        self.feature_pub = self.create_publisher(Float32MultiArray, s.features_topic, base.STATE_QOS)
        self.transcript_pub = self.create_publisher(String, s.transcript_topic, base.STATE_QOS)
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
        self.diagnostics = base.Diagnostics(self, s.diagnostics_period_s)
        self.create_timer(s.diagnostics_period_s, self.update_diagnostics)
        self.get_logger().info(f"listening on {s.audio_topic} at {s.sample_rate} Hz, ASR {s.asr_backend}")

    def on_audio(self, msg: Int16MultiArray) -> None:
        try:
            pcm = messages.pcm_from_msg(msg)
        except messages.MessageError as err:
            self.report("bad_audio", f"dropping audio from {self.settings.audio_topic}: {err}")
            return
        if pcm.size == 0:
            return
        frames = self.features.push(pcm)
        if frames.n_frames:
            layout = network_audio_features(frames.log_mel, frames.rms_db, frames.f0_hz, frames.voiced_prob,
                                            frames.vad)
            for row in layout:
                out = Float32MultiArray()
                out.data = row.tolist()
                self.feature_pub.publish(out)
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
            if pcm is None:
                return

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
