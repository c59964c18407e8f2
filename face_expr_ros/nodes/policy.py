"""Policy node: the speaker's face, voice and words in; the listener's expression out at 30 Hz.

Frames are on a fixed 30 Hz grid of the node's clock (wall time, or the bag's /clock under
``use_sim_time``). The timer steps the policy once for every grid frame that has passed (it
catches up after a late tick), and publishes each frame stamped with its grid time. The
inputs for frame ``t`` are chosen by their stamps, not by their arrival: the newest speaker
expression and audio feature frame stamped at or before ``t - input_delay_s``, and the words
that ended at or before ``t - text_delay_s``. With delays of 0 the policy reacts to whatever
arrived last; with delays that cover the perception latency, a bag replay gives exactly the
same observations, hence (with a fixed seed) the same expressions, every time.

Anything older than ``input_timeout_s`` counts as missing and the policy behaves as a polite
listener without it (no face: idle attentive behaviour; no audio or words: vision only). The
transcript is embedded in a worker thread as soon as words arrive, never on the 30 Hz timer.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque

import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import JointState

from face_expr_ros import config, messages
from face_expr_ros.expression import FPS
from face_expr_ros.nodes import base

DEFAULT_POLICY_DIR = "models/policy"
HISTORY_S = 5.0
MAX_CATCH_UP_FRAMES = 15
START_SNAP_FRAMES = 15
MAX_TRANSCRIPT_WORDS = 200


class StampedHistory:
    """Recent values by stamp (ns): the newest at or before a time, in arrival-independent order."""

    def __init__(self, keep_ns: int) -> None:
        self.keep_ns = keep_ns
        self._stamps: deque[int] = deque()
        self._values: deque[object] = deque()
        self._lock = threading.Lock()

    def add(self, stamp_ns: int, value: object) -> None:
        with self._lock:
            if self._stamps and stamp_ns <= self._stamps[-1]:
                # Out of order (or a repeat): insert in place so lookups stay by stamp.
                i = bisect.bisect_left(list(self._stamps), stamp_ns)
                if i < len(self._stamps) and self._stamps[i] == stamp_ns:
                    return
                self._stamps.insert(i, stamp_ns)
                self._values.insert(i, value)
            else:
                self._stamps.append(stamp_ns)
                self._values.append(value)
            while self._stamps and self._stamps[-1] - self._stamps[0] > self.keep_ns:
                self._stamps.popleft()
                self._values.popleft()

    def at_or_before(self, t_ns: int, not_older_than_ns: int | None = None) -> tuple[int, object] | None:
        with self._lock:
            i = bisect.bisect_right(list(self._stamps), t_ns) - 1
            if i < 0:
                return None
            stamp = self._stamps[i]
            if not_older_than_ns is not None and t_ns - stamp > not_older_than_ns:
                return None
            return stamp, self._values[i]


class PolicyNode(Node):
    def __init__(self, **node_kwargs: object) -> None:
        super().__init__("policy", **node_kwargs)
        s = self.settings = base.declare_settings(self, config.PolicySettings)
        from face_expr_ros.perception.text_encoder import TextEncoder, default_encoder_dir, transcript_text
        from face_expr_ros.policy.model_dir import PolicyFileError
        from face_expr_ros.policy.runtime import Observation, Policy

        self._observation, self._transcript_text = Observation, transcript_text
        model_dir = s.model_dir or str(config.package_share() / DEFAULT_POLICY_DIR)
        seed = s.seed if s.seed >= 0 else int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        try:
            self.policy = Policy.load(model_dir, s.backend, temperature=s.temperature, top_p=s.top_p, seed=seed)
        except (PolicyFileError, FileNotFoundError, ValueError, ImportError) as err:
            raise config.ConfigError(f"node policy: cannot load the policy from {model_dir!r}: {err}") from None
        self.text_encoder = TextEncoder.ensure(default_encoder_dir())
        self.report = base.ReportOnce(self)
        self.meter = base.RateMeter()
        keep = int(HISTORY_S * 1e9)
        self.speaker = StampedHistory(keep)
        self.audio = StampedHistory(keep)
        self.voice = StampedHistory(keep)  # stamps of voiced audio frames
        self.texts = StampedHistory(int(3600 * 1e9))  # words end time -> embedding future
        self.words: list[str] = []
        self._embed_jobs: deque[tuple[int, str, threading.Event, list]] = deque()
        self._embed_ready = threading.Condition()
        self._stop = threading.Event()
        self._text_thread = threading.Thread(target=self._embed_loop, daemon=True)
        self._text_thread.start()
        self.next_frame: int | None = None
        self.create_subscription(JointState, s.speaker_topic, self.on_speaker, base.STATE_QOS)
        self.create_subscription(JointState, s.features_topic, self.on_audio, base.STATE_QOS)
        self.create_subscription(JointState, s.words_topic, self.on_words, base.STATE_QOS)
        self.publisher = self.create_publisher(JointState, s.expression_topic, base.STATE_QOS)
        self.create_timer(1.0 / s.rate_hz, self.tick)
        self.diagnostics = base.Diagnostics(self, s.diagnostics_period_s, self.update_diagnostics)
        self.get_logger().info(f"policy from {model_dir} on {self.policy.backend.name}, {s.rate_hz:g} Hz, "
                               f"temperature {s.temperature}, seed {seed}")

    # ------------------------------------------------------------------ inputs
    def on_speaker(self, msg: JointState) -> None:
        try:
            frame = messages.expression_from_joint_state(msg)
        except messages.MessageError as err:
            self.report("bad_speaker", f"dropping speaker expressions: {err}", key=str(err))
            return
        self.speaker.add(messages.stamp_to_ns(msg.header.stamp), frame)

    def on_audio(self, msg: JointState) -> None:
        frame = np.asarray(msg.position, np.float32)
        if frame.shape != (self.policy.cfg.audio_dim,) or not np.isfinite(frame).all():
            self.report("bad_audio", f"dropping audio feature frames of shape {frame.shape} "
                                     f"(expected ({self.policy.cfg.audio_dim},), finite)")
            return
        stamp = messages.stamp_to_ns(msg.header.stamp)
        self.audio.add(stamp, frame)
        if frame[-1] > 0.5:  # the VAD flag is the last value of the layout
            self.voice.add(stamp, True)

    def on_words(self, msg: JointState) -> None:
        if not msg.name:
            return
        self.words = (self.words + list(msg.name))[-MAX_TRANSCRIPT_WORDS:]
        done, box = threading.Event(), []
        with self._embed_ready:
            self._embed_jobs.append((messages.stamp_to_ns(msg.header.stamp), self._transcript_text(self.words),
                                     done, box))
            self._embed_ready.notify()
        self.texts.add(messages.stamp_to_ns(msg.header.stamp), (done, box))

    def _embed_loop(self) -> None:
        while not self._stop.is_set():
            with self._embed_ready:
                if not self._embed_jobs:
                    self._embed_ready.wait(0.2)
                    continue
                _, text, done, box = self._embed_jobs.popleft()
            box.append(self.text_encoder.embed(text))
            done.set()

    # ------------------------------------------------------------------ the 30 Hz path
    def tick(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        if now_ns <= 0:
            return  # sim time: no /clock yet
        last = int(np.floor(now_ns / 1e9 * FPS))
        if self.next_frame is None and self.settings.use_sim_time:
            # A replay starts its frames at the bag's start, snapped to the half second, so that
            # every replay steps the same frames whichever /clock message arrived first.
            self.next_frame = START_SNAP_FRAMES * round(last / START_SNAP_FRAMES)
        if self.next_frame is None or last - self.next_frame > MAX_CATCH_UP_FRAMES:
            if self.next_frame is not None:
                self.report("behind", f"policy fell {last - self.next_frame} frames behind; skipping ahead")
            self.next_frame = last
        while self.next_frame <= last:
            self.step_frame(self.next_frame)
            self.next_frame += 1

    def step_frame(self, k: int) -> None:
        s = self.settings
        t_ns = round(k / FPS * 1e9)
        inputs_ns = t_ns - int(s.input_delay_s * 1e9)
        timeout_ns = int(s.input_timeout_s * 1e9)
        speaker = self.speaker.at_or_before(inputs_ns, timeout_ns)
        audio = self.audio.at_or_before(inputs_ns, timeout_ns)
        since_word = None
        if audio is not None:
            voiced = self.voice.at_or_before(inputs_ns)
            since_word = 30.0 if voiced is None else max(0.0, (inputs_ns - voiced[0]) / 1e9)
        text = self.texts.at_or_before(t_ns - int(s.text_delay_s * 1e9))
        embedding = None
        if text is not None:
            done, box = text[1]
            done.wait(1.0)  # embedded on arrival, long before it is due; waits only if very late
            embedding = box[0] if box else None
        observation = self._observation(None if speaker is None else speaker[1],
                                        None if audio is None else audio[1], embedding, since_word)
        start = time.perf_counter()
        expression = self.policy.step(observation)
        self.meter.tick(time.perf_counter() - start)
        out = JointState()
        out.header.stamp = Time(nanoseconds=t_ns).to_msg()
        out.header.frame_id = "listener_face"
        messages.fill_joint_state(out, expression)
        self.publisher.publish(out)
        if speaker is None:
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
