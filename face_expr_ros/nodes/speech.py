"""Speech node: microphone PCM in; audio features (every 30 Hz frame) and recognised words out.

``/face_expr/audio_features`` carries one frame per message as a stamped ``JointState`` whose
names and values are the policy's input layout (``learning.features.network_audio_features``:
log-mel, scaled energy and pitch, voicing, VAD); the stamp is the frame's time in the audio
stream. ``/face_expr/transcript`` carries the words recognised since the last message,
space-separated, for people and other nodes. ``/face_expr/words`` carries one message per
audio chunk the recogniser has consumed, stamped with the time of that chunk's end: its names
are the words the chunk completed (usually none) and its positions their end times in
seconds on the node's clock. The stamp says where in the audio the words were delivered, and
an empty message says "recognised up to here, nothing new", which is what lets the policy
wait for the recogniser in exact replays. Recognition runs in a process of its own
(``nodes/asr_worker.py``): PocketSphinx holds the GIL while it decodes an utterance, and in a
thread it stalled the features (and, in ``face-expr bringup``, every node) for 0.35-0.5 s.

Time of the audio: with ``stamped_audio`` the node takes stamped PCM (from the microphone
node or the bag player) and dates the stream from the stamps that travel with the chunks: the
first chunk gives the stream's origin, later chunks are dated by their sample count from it,
and a chunk whose stamp disagrees with its sample count by more than ``AUDIO_RESYNC_S`` (lost
chunks, a restarted microphone, a looped bag) moves the origin. Unstamped
``Int16MultiArray`` PCM has only its arrival time: the origin is the first chunk's arrival
minus its duration, snapped to the 30 Hz grid, which is as good as delivery is punctual.
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Int16MultiArray, String

from face_expr_ros import config, messages
from face_expr_ros.expression import FPS
from face_expr_ros.learning.features import audio_feature_names, network_audio_features
from face_expr_ros.nodes import base
from face_expr_ros.nodes.asr_worker import RecognizerProcess

AUDIO_RESYNC_S = 0.2
ASR_QUEUE_CHUNKS = 500
ASR_STOP_TIMEOUT_S = 5.0


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
        self.stream_start_ns: int | None = None  # time of the stream's first sample
        self.samples_in = 0
        self.frames_out = 0
        self.feature_pub = self.create_publisher(JointState, s.features_topic, base.STREAM_QOS)
        self.transcript_pub = self.create_publisher(String, s.transcript_topic, base.STATE_QOS)
        self.words_pub = self.create_publisher(JointState, s.words_topic, base.STREAM_QOS)
        self.recogniser: RecognizerProcess | None = None
        if s.asr_backend != "none":
            try:
                self.recogniser = RecognizerProcess(s.asr_backend, s.sample_rate, s.vosk_model_dir or None,
                                                    self._publish_words, max_queued=ASR_QUEUE_CHUNKS)
            except RuntimeError as err:
                raise config.ConfigError(f"node speech: asr_backend {s.asr_backend!r}: {err}") from None
        if s.stamped_audio:
            self.audio_topic = s.audio_topic + "/stamped"
            self.create_subscription(Image, self.audio_topic, self.on_stamped_audio, base.AUDIO_QOS)
        else:
            self.audio_topic = s.audio_topic
            self.create_subscription(Int16MultiArray, s.audio_topic, self.on_audio, base.AUDIO_QOS)
        self.diagnostics = base.Diagnostics(self, s.diagnostics_period_s, self.update_diagnostics)
        self.get_logger().info(f"listening on {self.audio_topic} at {s.sample_rate} Hz, ASR {s.asr_backend}")

    # ------------------------------------------------------------------ audio in
    def on_audio(self, msg: Int16MultiArray) -> None:
        try:
            pcm = messages.pcm_from_msg(msg)
        except messages.MessageError as err:
            self.report("bad_audio", f"dropping audio from {self.audio_topic}: {err}", key=str(err))
            return
        if pcm.size == 0:
            return
        if self.stream_start_ns is None:
            start = self.get_clock().now().nanoseconds - self._duration_ns(pcm.size)
            self.stream_start_ns = int(round(start / 1e9 * FPS) / FPS * 1e9)
        self.push(pcm)

    def on_stamped_audio(self, msg: Image) -> None:
        try:
            pcm, end_ns = messages.pcm_from_stamped(msg)
        except messages.MessageError as err:
            self.report("bad_audio", f"dropping audio from {self.audio_topic}: {err}", key=str(err))
            return
        if pcm.size == 0:
            return
        start_ns = end_ns - self._duration_ns(pcm.size)
        if self.stream_start_ns is None:
            self.stream_start_ns = start_ns
        else:
            expected_ns = self.stream_start_ns + self._duration_ns(self.samples_in)
            if abs(start_ns - expected_ns) > AUDIO_RESYNC_S * 1e9:
                self.report("audio_resync", f"audio chunk stamped {(start_ns - expected_ns) / 1e9:+.3f} s from "
                                            "where its sample count puts it (lost audio, a restart?): "
                                            "re-dating the stream from its stamps")
                self.stream_start_ns = start_ns - self._duration_ns(self.samples_in)
        self.push(pcm)

    def push(self, pcm: np.ndarray) -> None:
        """Features for every completed 30 Hz frame, and the chunk to the recogniser."""
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
        self.samples_in += pcm.size
        end_ns = self._stream_ns(self.samples_in / self.settings.sample_rate)
        if self.recogniser is not None and not self.recogniser.put(pcm, end_ns):
            self.report("asr_overrun", "speech recogniser cannot keep up: dropping audio for it")

    # ------------------------------------------------------------------ recognition
    def _publish_words(self, at_ns: int, words: list[tuple[str, float]]) -> None:
        """What the recogniser found in one chunk: words, or an empty progress message."""
        self.words += len(words)
        timed = JointState(name=[text for text, _ in words], position=[self._stream_ns(end) / 1e9 for _, end in words])
        timed.header.stamp = Time(nanoseconds=at_ns).to_msg()
        try:
            if words:
                self.transcript_pub.publish(String(data=" ".join(text for text, _ in words)))
            self.words_pub.publish(timed)
        except RuntimeError:  # shutting down: the last words arrive after Ctrl-C ended the context
            if self.context.ok():
                raise

    # ------------------------------------------------------------------ helpers
    def _duration_ns(self, n_samples: int) -> int:
        return round(n_samples * 1e9 / self.settings.sample_rate)

    def _stream_ns(self, seconds: float) -> int:
        """A time in the audio stream (seconds from its start) on the node's clock."""
        return int((self.stream_start_ns or 0) + round(seconds * 1e9))

    def update_diagnostics(self) -> None:
        if self.recogniser is not None and self.recogniser.exit_code is not None:
            self.report("asr_exited", f"the speech recogniser process exited (code {self.recogniser.exit_code}): "
                                      "no more words")
        counts = dict(self.report.counts)
        resyncs = counts.pop("audio_resync", 0)
        running = counts.pop("asr_exited", 0) == 0 and self.recogniser is not None
        self.diagnostics.set(feature_rate_hz=f"{self.meter.rate_hz():.1f}", feature_frames=self.meter.count,
                             words=self.words, asr=self.settings.asr_backend, asr_running=running,
                             audio_resyncs=resyncs, **{f"dropped_{k}": v for k, v in counts.items()})

    def destroy_node(self) -> None:
        if self.recogniser is not None:
            self.recogniser.close(ASR_STOP_TIMEOUT_S)  # publishes the last words
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return base.run_node(SpeechNode, args)
