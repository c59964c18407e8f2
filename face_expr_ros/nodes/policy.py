"""Policy node: the speaker's face, voice and words in; the listener's expression out at 30 Hz.

Frames are on a fixed 30 Hz grid of the node's clock (wall time, or the bag's /clock under
``use_sim_time``): frame ``k`` is stamped ``k / 30`` s, every frame is stepped exactly once
and in order, and its inputs are chosen by their stamps, not by their arrival: the newest
speaker expression and audio feature frame stamped at or before ``t - input_delay_s``, and
the words the recogniser had delivered by ``t - text_delay_s`` of the audio.

When a frame is stepped is a separate question, answered by the inputs rather than by a
timer tick:

* live (``wait_for_inputs: false``): as soon as the tracker's result for the frame's slot of
  camera time arrives (a face, or the tracker's "no face" message), so the expression goes
  out one policy step after the tracked frame; at the latest ``max_wait_s`` after the frame's
  time, without it, so the output stays at 30 Hz when the tracker is slow or gone. Audio and
  words are whatever has arrived by then.
* exact (``wait_for_inputs: true``, replays): once the frame's time has come and every input
  stream that has a publisher has delivered everything it stamped up to the frame's input
  time (speaker and audio frames stamped at or after it, the recogniser's position in the
  audio past it). What the frame sees is then fixed by the bag, not by scheduling, so with a
  fixed seed two replays give the same expression stream. ``max_wait_s`` bounds the wait for
  a stream that has a publisher but stays silent; a frame stepped at that deadline is
  reported, since it may differ between replays.

Anything older than ``input_timeout_s`` counts as missing and the policy behaves as a polite
listener without it (no face: idle attentive behaviour; no audio or words: vision only). The
transcript is embedded in a worker thread as soon as words arrive, never on the 30 Hz path.
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
DEADLINE_CHECKS_PER_FRAME = 4
EMBED_WAIT_S = 10.0


def frame_ns(k: int) -> int:
    """Time of grid frame ``k`` (the same rounding as the camera stamps of generated bags)."""
    return round(k / FPS * 1e9)


class StampedHistory:
    """Recent values by stamp (ns): the newest at or before a time, in arrival-independent order.

    ``watermark_ns`` is the newest stamp seen, with or without a value (``mark``): on an
    in-order stream, everything stamped up to it has arrived.
    """

    def __init__(self, keep_ns: int) -> None:
        self.keep_ns = keep_ns
        self.watermark_ns: int | None = None
        self._stamps: deque[int] = deque()
        self._values: deque[object] = deque()
        self._lock = threading.Lock()

    def mark(self, stamp_ns: int) -> None:
        with self._lock:
            if self.watermark_ns is None or stamp_ns > self.watermark_ns:
                self.watermark_ns = stamp_ns

    def add(self, stamp_ns: int, value: object) -> None:
        self.mark(stamp_ns)
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
            i = bisect.bisect_right(self._stamps, t_ns) - 1
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
        from face_expr_ros.policy.persona import parse_choice
        from face_expr_ros.policy.runtime import Observation, Policy

        self._observation, self._transcript_text = Observation, transcript_text
        model_dir = s.model_dir or str(config.package_share() / DEFAULT_POLICY_DIR)
        seed = s.seed if s.seed >= 0 else int(np.random.SeedSequence().generate_state(1)[0] >> 1)
        try:
            self.policy = Policy.load(model_dir, s.backend, temperature=s.temperature, top_p=s.top_p,
                                      token_temperature=s.token_temperature,
                                      eyelid_temperature=s.eyelid_temperature,
                                      gaze_temperature=s.gaze_temperature,
                                      head_temperature=s.head_temperature,
                                      code_persistence=s.code_persistence,
                                      level_noise_tau_s=s.level_noise_tau_s, replan_every=s.replan_every,
                                      smoothing_s=s.smoothing_s, seed=seed,
                                      persona=parse_choice(s.persona), persona_spread=s.persona_spread,
                                      calibrate=s.output_calibration)
        except (PolicyFileError, FileNotFoundError, ValueError, ImportError) as err:
            raise config.ConfigError(f"node policy: cannot load the policy from {model_dir!r}: {err}") from None
        self.text_encoder = TextEncoder.ensure(default_encoder_dir())
        self.report = base.ReportOnce(self)
        self.meter = base.RateMeter()
        self.wait_meter = base.RateMeter()  # frame time -> stepped, in ms of the node's clock
        keep = int(HISTORY_S * 1e9)
        self.speaker = StampedHistory(keep)
        self.audio = StampedHistory(keep)
        self.texts = StampedHistory(int(3600 * 1e9))  # recognised-at stamp -> embedding future
        self.words: list[str] = []
        self._embedding: np.ndarray | None = None
        self._embed_jobs: deque[tuple[str, threading.Event, list]] = deque()
        self._embed_ready = threading.Condition()
        self._stop = threading.Event()
        self._text_thread = threading.Thread(target=self._embed_loop, daemon=True)
        self._text_thread.start()
        self.next_frame: int | None = None
        self.steps_on_input = 0
        self.steps_on_deadline = 0
        self.last_input_monotonic = time.monotonic()
        self._input_delay_ns = round(s.input_delay_s * 1e9)
        self._text_delay_ns = round(s.text_delay_s * 1e9)
        self._max_wait_ns = round(s.max_wait_s * 1e9)
        self.create_subscription(JointState, s.speaker_topic, self.on_speaker, base.STREAM_QOS)
        self.create_subscription(JointState, s.features_topic, self.on_audio, base.STREAM_QOS)
        self.create_subscription(JointState, s.words_topic, self.on_words, base.STREAM_QOS)
        self.publisher = self.create_publisher(JointState, s.expression_topic, base.STATE_QOS)
        # The timer only enforces deadlines; frames are normally stepped by their inputs.
        self.create_timer(1.0 / (s.rate_hz * DEADLINE_CHECKS_PER_FRAME), self.tick)
        self.diagnostics = base.Diagnostics(self, s.diagnostics_period_s, self.update_diagnostics)
        mode = "waits for its inputs (exact replays)" if s.wait_for_inputs else "steps on tracked frames"
        self.get_logger().info(f"policy from {model_dir} on {self.policy.backend.name}, {FPS:g} Hz grid, {mode}, "
                               f"max wait {s.max_wait_s:g} s, temperature {s.temperature}, seed {seed}, "
                               f"output calibration {'on' if self.policy.calibration is not None else 'off'}")

    # ------------------------------------------------------------------ inputs
    def on_speaker(self, msg: JointState) -> None:
        stamp = messages.stamp_to_ns(msg.header.stamp)
        self.last_input_monotonic = time.monotonic()
        if not msg.name:  # the tracker looked at this frame and found no face
            self.speaker.mark(stamp)
        else:
            try:
                frame = messages.expression_from_joint_state(msg)
            except messages.MessageError as err:
                self.report("bad_speaker", f"dropping speaker expressions: {err}", key=str(err))
                return
            self.speaker.add(stamp, frame)
        self.advance()

    def on_audio(self, msg: JointState) -> None:
        self.last_input_monotonic = time.monotonic()
        frame = np.asarray(msg.position, np.float32)
        if frame.shape != (self.policy.cfg.audio_dim,) or not np.isfinite(frame).all():
            self.report("bad_audio", f"dropping audio feature frames of shape {frame.shape} "
                                     f"(expected ({self.policy.cfg.audio_dim},), finite)")
            return
        stamp = messages.stamp_to_ns(msg.header.stamp)
        self.audio.add(stamp, frame)
        if self.settings.wait_for_inputs:
            self.advance()

    def on_words(self, msg: JointState) -> None:
        self.last_input_monotonic = time.monotonic()
        stamp = messages.stamp_to_ns(msg.header.stamp)
        if msg.name:
            self.words = (self.words + list(msg.name))[-MAX_TRANSCRIPT_WORDS:]
            done, box = threading.Event(), []
            with self._embed_ready:
                self._embed_jobs.append((self._transcript_text(self.words), done, box))
                self._embed_ready.notify()
            self.texts.add(stamp, (done, box))
        else:  # the recogniser has consumed the audio up to the stamp, and found no new word
            self.texts.mark(stamp)
        if self.settings.wait_for_inputs:
            self.advance()

    def _embed_loop(self) -> None:
        # Embedding a transcript takes tens of milliseconds and is not on the 30 Hz path: it must
        # not run at the node's real-time priority, ahead of the tracker.
        base.background_thread()
        while not self._stop.is_set():
            with self._embed_ready:
                if not self._embed_jobs:
                    self._embed_ready.wait(0.2)
                    continue
                text, done, box = self._embed_jobs.popleft()
            box.append(self.text_encoder.embed(text))
            done.set()

    # ------------------------------------------------------------------ the 30 Hz path
    def tick(self) -> None:
        now_ns = self.get_clock().now().nanoseconds
        if now_ns <= 0:
            return  # sim time: no /clock yet
        if self.next_frame is None:
            last = int(np.floor(now_ns / 1e9 * FPS))
            # A replay starts its frames at the bag's start, snapped to the half second, so that
            # every replay steps the same frames whichever /clock message arrived first.
            self.next_frame = START_SNAP_FRAMES * round(last / START_SNAP_FRAMES) if self.settings.use_sim_time \
                else last
        self.advance(now_ns)

    def advance(self, now_ns: int | None = None) -> None:
        """Step every frame, in order, whose inputs are ready or whose deadline has passed."""
        if self.next_frame is None:
            return
        now_ns = self.get_clock().now().nanoseconds if now_ns is None else now_ns
        if not self.settings.wait_for_inputs:
            behind = int(np.floor(now_ns / 1e9 * FPS)) - self.next_frame
            if behind > MAX_CATCH_UP_FRAMES:
                self.report("behind", f"policy fell {behind} frames behind; skipping ahead")
                self.next_frame += behind
        while True:
            k = self.next_frame
            t_ns = frame_ns(k)
            if self._inputs_ready(k, t_ns, now_ns):
                self.steps_on_input += 1
            elif now_ns >= t_ns + self._max_wait_ns:
                self.steps_on_deadline += 1
                if self.settings.wait_for_inputs:
                    self.report("late_inputs", f"frame at {t_ns / 1e9:.3f} s stepped after waiting max_wait_s "
                                f"({self.settings.max_wait_s:g} s) for {', '.join(self._missing(t_ns))}: "
                                "this replay may not be exactly repeatable")
            else:
                return
            self.wait_meter.tick(max(0, now_ns - t_ns) / 1e9)
            self.step_frame(k)
            self.next_frame = k + 1

    def _inputs_ready(self, k: int, t_ns: int, now_ns: int) -> bool:
        if not self.settings.wait_for_inputs:
            # The tracker's result for the frame's slot of camera time, (t_{k-1}, t_k] shifted
            # by the input delay, has arrived (and the slot has begun: a camera clock that runs
            # ahead must not make the policy race through future frames).
            mark, slot_start_ns = self.speaker.watermark_ns, frame_ns(k - 1)
            return now_ns > slot_start_ns and mark is not None and mark > slot_start_ns - self._input_delay_ns
        return now_ns >= t_ns and not self._missing(t_ns)

    def _missing(self, t_ns: int) -> list[str]:
        """Input topics that have a publisher and have not delivered everything up to frame ``t_ns``."""
        s = self.settings
        streams = ((s.speaker_topic, self.speaker, t_ns - self._input_delay_ns),
                   (s.features_topic, self.audio, t_ns - self._input_delay_ns),
                   (s.words_topic, self.texts, t_ns - self._text_delay_ns))
        return [topic for topic, history, need_ns in streams
                if (history.watermark_ns is None or history.watermark_ns < need_ns) and self.count_publishers(topic)]

    def step_frame(self, k: int) -> None:
        s = self.settings
        t_ns = frame_ns(k)
        inputs_ns = t_ns - self._input_delay_ns
        timeout_ns = int(s.input_timeout_s * 1e9)
        speaker = self.speaker.at_or_before(inputs_ns, timeout_ns)
        audio = self.audio.at_or_before(inputs_ns, timeout_ns)
        text = self.texts.at_or_before(t_ns - self._text_delay_ns)
        embedding = None
        if text is not None:
            done, box = text[1]
            if s.wait_for_inputs and not done.wait(EMBED_WAIT_S):
                self.report("slow_embedding", f"the transcript embedding took over {EMBED_WAIT_S:g} s; "
                                              "using the previous one")
            # Live, a transcript still being embedded leaves the previous embedding in use.
            embedding = box[0] if box else self._embedding
        self._embedding = embedding
        observation = self._observation(None if speaker is None else speaker[1],
                                        None if audio is None else audio[1], embedding)
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

    def idle_for_s(self) -> float:
        """Wall-clock seconds since the last input arrived (for bringup to let a replay drain)."""
        return time.monotonic() - self.last_input_monotonic

    def update_diagnostics(self) -> None:
        self.diagnostics.set(rate_hz=f"{self.meter.rate_hz():.1f}", steps=self.meter.count,
                             step_ms_p50=f"{self.meter.latency_ms(0.5):.2f}",
                             step_ms_p99=f"{self.meter.latency_ms(0.99):.2f}",
                             wait_ms_p50=f"{self.wait_meter.latency_ms(0.5):.1f}",
                             wait_ms_p99=f"{self.wait_meter.latency_ms(0.99):.1f}",
                             steps_on_input=self.steps_on_input, steps_on_deadline=self.steps_on_deadline,
                             backend=self.policy.backend.name, transcript_words=len(self.words),
                             **{f"count_{k}": v for k, v in self.report.counts.items()})

    def destroy_node(self) -> None:
        self._stop.set()
        self._text_thread.join(timeout=2.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return base.run_node(PolicyNode, args)
