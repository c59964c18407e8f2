"""Policy node: the speaker's face, voice and words in; the listener's expression out at 30 Hz.

Inputs are kept as "latest value + arrival time"; anything older than ``input_timeout_s``
counts as missing, and the policy behaves as a polite listener without it (no face: idle
attentive behaviour; no audio or words: vision only). The transcript is embedded in a worker
thread when it changes, never on the 30 Hz timer. "Seconds since the last word" is measured
from the voice-activity flag of the audio features, which ends with the speaker's last word.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32MultiArray, String

from face_expr_ros import config, messages
from face_expr_ros.nodes import base

DEFAULT_POLICY_DIR = "models/policy"
MAX_TRANSCRIPT_WORDS = 200


class PolicyNode(Node):
    def __init__(self, **node_kwargs: object) -> None:
        super().__init__("policy", **node_kwargs)
        s = self.settings = base.declare_settings(self, config.PolicySettings)
        from face_expr_ros.perception.text_encoder import TextEncoder, default_encoder_dir, transcript_text
        from face_expr_ros.policy.model_dir import PolicyFileError
        from face_expr_ros.policy.runtime import Observation, Policy

        self._observation = Observation
        self._transcript_text = transcript_text
        model_dir = s.model_dir or str(config.package_share() / DEFAULT_POLICY_DIR)
        seed = s.seed if s.seed >= 0 else int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        try:
            self.policy = Policy.load(model_dir, s.backend, temperature=s.temperature, top_p=s.top_p, seed=seed)
        except (PolicyFileError, FileNotFoundError, ValueError, ImportError) as err:
            raise config.ConfigError(f"node policy: cannot load the policy from {model_dir!r}: {err}") from None
        self.text_encoder = TextEncoder.ensure(default_encoder_dir())
        self.report = base.ReportOnce(self)
        self.meter = base.RateMeter()
        self.speaker: np.ndarray | None = None
        self.speaker_time = -1e9
        self.speaker_stamp_ns = 0
        self.audio: np.ndarray | None = None
        self.audio_time = -1e9
        self.last_voice_time: float | None = None
        self.words: list[str] = []
        self.embedding: np.ndarray | None = None
        self._text_lock = threading.Lock()
        self._text_wanted = threading.Event()
        self._stop = threading.Event()
        self._text_thread = threading.Thread(target=self._embed_loop, daemon=True)
        self._text_thread.start()
        self.create_subscription(JointState, s.speaker_topic, self.on_speaker, base.STATE_QOS)
        self.create_subscription(Float32MultiArray, s.features_topic, self.on_audio, base.STATE_QOS)
        self.create_subscription(String, s.transcript_topic, self.on_transcript, base.STATE_QOS)
        self.publisher = self.create_publisher(JointState, s.expression_topic, base.STATE_QOS)
        self.create_timer(1.0 / s.rate_hz, self.tick)
        self.diagnostics = base.Diagnostics(self, s.diagnostics_period_s)
        self.create_timer(s.diagnostics_period_s, self.update_diagnostics)
        self.get_logger().info(f"policy from {model_dir} on {self.policy.backend.name}, {s.rate_hz:g} Hz, "
                               f"temperature {s.temperature}, seed {seed}")

    # ------------------------------------------------------------------ inputs
    def on_speaker(self, msg: JointState) -> None:
        try:
            self.speaker = messages.expression_from_joint_state(msg)
        except messages.MessageError as err:
            self.report("bad_speaker", f"dropping speaker expressions: {err}")
            return
        self.speaker_time = self._now()
        self.speaker_stamp_ns = messages.stamp_to_ns(msg.header.stamp)

    def on_audio(self, msg: Float32MultiArray) -> None:
        frame = np.asarray(msg.data, np.float32)
        if frame.shape != (self.policy.cfg.audio_dim,) or not np.isfinite(frame).all():
            self.report("bad_audio", f"dropping audio feature frames of shape {frame.shape} "
                                     f"(expected ({self.policy.cfg.audio_dim},), finite)")
            return
        self.audio, self.audio_time = frame, self._now()
        if frame[-1] > 0.5:  # the VAD flag is the last value of the layout
            self.last_voice_time = self.audio_time

    def on_transcript(self, msg: String) -> None:
        new = msg.data.split()
        if new:
            with self._text_lock:
                self.words = (self.words + new)[-MAX_TRANSCRIPT_WORDS:]
            self._text_wanted.set()

    def _embed_loop(self) -> None:
        while not self._stop.is_set():
            if not self._text_wanted.wait(0.2):
                continue
            self._text_wanted.clear()
            with self._text_lock:
                text = self._transcript_text(self.words)
            self.embedding = self.text_encoder.embed(text)

    # ------------------------------------------------------------------ the 30 Hz path
    def _now(self) -> float:
        """Seconds on the node's clock: wall time, or the bag's /clock under use_sim_time."""
        return self.get_clock().now().nanoseconds / 1e9

    def tick(self) -> None:
        now = self._now()
        timeout = self.settings.input_timeout_s
        fresh_speaker = self.speaker if now - self.speaker_time <= timeout else None
        fresh_audio = self.audio if now - self.audio_time <= timeout else None
        since_word = None
        if fresh_audio is not None and self.last_voice_time is not None:
            since_word = max(0.0, now - self.last_voice_time)
        observation = self._observation(fresh_speaker, fresh_audio, self.embedding, since_word)
        start = time.perf_counter()
        expression = self.policy.step(observation)
        self.meter.tick(time.perf_counter() - start)
        out = JointState()
        out.header.stamp = self.get_clock().now().to_msg()
        out.header.frame_id = "listener_face"
        messages.fill_joint_state(out, expression)
        self.publisher.publish(out)
        if fresh_speaker is None:
            self.report("no_face", "no speaker face: idle listening behaviour")

    def update_diagnostics(self) -> None:
        self.diagnostics.set(rate_hz=f"{self.meter.rate_hz():.1f}", steps=self.meter.count,
                             step_ms_p50=f"{self.meter.latency_ms(0.5):.2f}",
                             step_ms_p99=f"{self.meter.latency_ms(0.99):.2f}",
                             backend=self.policy.backend.name, transcript_words=len(self.words),
                             **{f"count_{k}": v for k, v in self.report.counts.items()})

    def destroy_node(self) -> None:
        self._stop.set()
        self._text_thread.join(timeout=2.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return base.run_node(PolicyNode, args)
