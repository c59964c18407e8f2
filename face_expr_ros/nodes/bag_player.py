"""Bag player node: replays a rosbag2 (sqlite3 or mcap) onto the graph in real time.

Messages keep their recorded spacing (scaled by ``rate``) and are published as the bag's raw
CDR bytes, so any message type plays without conversion. With ``publish_clock`` the player
also drives ``/clock`` from the bag's time, for nodes running with ``use_sim_time``: during
``start_delay_s`` it holds the clock at the bag's first time, so every node sees the same
start whenever it came up.

With ``max_lag_s`` the player applies back-pressure: while the newest stamp on any of
``pace_topics`` (perception outputs, stamped ``JointState``) is more than ``max_lag_s`` behind
the bag, it holds the bag and its clock. A graph slower than real time (``face-expr bringup``
on two busy cores) then plays the bag slower instead of falling ever further behind, which is
what keeps long replays exact.

Unstamped PCM (``std_msgs/Int16MultiArray``) carries no time, so with ``stamp_audio`` the
player also publishes each chunk as stamped PCM on ``<topic>/stamped`` (``messages.
STAMPED_PCM_ENCODING``), stamped with the chunk's record time in the bag (the end of the
chunk, as ``face-expr data media`` and the bag recorder write it). The speech node with
``stamped_audio`` dates the audio from these stamps, which travel with the data, instead of
from when the chunks happen to arrive.
"""

from __future__ import annotations

import threading
import time

from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Int16MultiArray

from face_expr_ros import bags, config, messages
from face_expr_ros.nodes import base

CLOCK_PERIOD_S = 0.01
SETTLE_S = 0.5  # discovery counts steady this long: the graph is connected
STAMPED_SUFFIX = "/stamped"


def parse_remap(text: str) -> dict[str, str]:
    """``"/a:=/b,/c:=/d"`` -> {"/a": "/b", "/c": "/d"}; a malformed entry is a ConfigError."""
    remap = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        if ":=" not in entry:
            raise config.ConfigError(f"node bag_player: remap entry {entry!r} is not of the form from:=to")
        source, target = (part.strip() for part in entry.split(":=", 1))
        remap[source] = target
    return remap


class BagPlayerNode(Node):
    def __init__(self, **node_kwargs: object) -> None:
        super().__init__("bag_player", **node_kwargs)
        s = self.settings = base.declare_settings(self, config.BagPlayerSettings)
        if not s.bag:
            raise config.ConfigError("node bag_player: parameter 'bag' is empty; give a rosbag2 folder")
        try:
            available = bags.bag_topics(s.bag)
        except bags.BagError as err:
            raise config.ConfigError(f"node bag_player: {err}") from None
        wanted = [t.strip() for t in s.topics.split(",") if t.strip()] or sorted(available)
        missing = [t for t in wanted if t not in available]
        if missing:
            raise config.ConfigError(
                f"node bag_player: topics {missing} are not in {s.bag}; it has {sorted(available)}"
            )
        self.topics = wanted
        self.remap = parse_remap(s.remap)
        self.publishers_by_topic = {
            topic: self.create_publisher(base.message_class(available[topic]), self.remap.get(topic, topic),
                                         base.STATE_QOS)
            for topic in wanted
        }
        # Stamped copies of unstamped PCM, unless the bag already holds them.
        self.stamped_pcm = {
            topic: self.create_publisher(Image, self.remap.get(topic, topic) + STAMPED_SUFFIX, base.AUDIO_QOS)
            for topic in wanted
            if s.stamp_audio and available[topic] == bags.INT16_ARRAY and topic + STAMPED_SUFFIX not in available
        }
        self.clock_pub = self.create_publisher(Clock, "/clock", base.CLOCK_QOS) if s.publish_clock else None
        # Back-pressure: the newest stamp seen on each pace topic (not on topics it plays itself).
        played = {self.remap.get(t, t) for t in wanted}
        self.pace_topics = [t.strip() for t in s.pace_topics.split(",")
                            if t.strip() and t.strip() not in played] if s.max_lag_s > 0 else []
        self._newest: dict[str, int] = {}
        for topic in self.pace_topics:
            self.create_subscription(JointState, topic, lambda msg, t=topic: self._on_paced(t, msg), base.STREAM_QOS)
        self.paused_s = 0.0
        self.published = 0
        self._last_clock_ns = -1
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, daemon=True)
        self._thread.start()
        self.get_logger().info(f"playing {s.bag} ({len(wanted)} topics) at {s.rate:g}x"
                               + (" with /clock" if s.publish_clock else "")
                               + "".join(f", stamped PCM on {self.remap.get(t, t)}{STAMPED_SUFFIX}"
                                         for t in self.stamped_pcm))

    def _play(self) -> None:
        s = self.settings
        messages_in_bag = bags.read_bag_raw(s.bag, self.topics)
        first = next(messages_in_bag, None)
        messages_in_bag.close()
        # Hold the clock at the bag's start while subscribers connect.
        end = time.monotonic() + s.start_delay_s
        while (wait := end - time.monotonic()) > 0:
            if first is not None and self.clock_pub is not None:
                self._publish_clock(first[2])
            if self._stop.wait(min(wait, CLOCK_PERIOD_S)):
                return
        # Then until discovery has settled: some played topic has a subscriber and no count has
        # changed for SETTLE_S (topics nobody reads, like ground truth, stay at 0).
        end, counts, steady_since = time.monotonic() + s.subscriber_wait_s, None, time.monotonic()
        while time.monotonic() < end:
            now_counts = self._subscriber_counts()
            if now_counts != counts:
                counts, steady_since = now_counts, time.monotonic()
            elif any(counts.values()) and time.monotonic() - steady_since >= SETTLE_S:
                break
            if first is not None and self.clock_pub is not None:
                self._publish_clock(first[2])
            if self._stop.wait(CLOCK_PERIOD_S):
                return
        else:
            if s.subscriber_wait_s > 0:
                self.get_logger().warning(f"subscribers still changing or none after {s.subscriber_wait_s:g} s "
                                          f"({counts}); playing anyway")
        while True:
            self._play_once()
            if not s.loop or self._stop.is_set():
                break
        self.finished.set()
        held = f", held {self.paused_s:.1f} s for the graph to catch up" if self.paused_s else ""
        self.get_logger().info(f"finished {s.bag}: {self.published} messages{held}")
        if s.exit_on_end:
            self.context.try_shutdown()

    def _subscriber_counts(self) -> dict[str, int]:
        return {self.remap.get(t, t): pub.get_subscription_count() for t, pub in self.publishers_by_topic.items()}

    def _play_once(self) -> None:
        rate = self.settings.rate
        start_wall, first_ns, next_clock = time.monotonic(), None, 0.0
        for topic, _msgtype, t_ns, raw in bags.read_bag_raw(self.settings.bag, self.topics):
            first_ns = t_ns if first_ns is None else first_ns
            while self._graph_lags(t_ns):  # hold the bag (and its clock) until the graph catches up
                if self._stop.wait(CLOCK_PERIOD_S):
                    return
                start_wall += CLOCK_PERIOD_S
                self.paused_s += CLOCK_PERIOD_S
            due = start_wall + (t_ns - first_ns) / 1e9 / rate
            while (wait := due - time.monotonic()) > 0:
                if self.clock_pub is not None and time.monotonic() >= next_clock:
                    self._publish_clock(first_ns + int((time.monotonic() - start_wall) * rate * 1e9))
                    next_clock = time.monotonic() + CLOCK_PERIOD_S
                if self._stop.wait(min(wait, CLOCK_PERIOD_S)):
                    return
            if self.clock_pub is not None and t_ns > self._last_clock_ns:  # messages often share a time
                self._publish_clock(t_ns)
                next_clock = time.monotonic() + CLOCK_PERIOD_S
            self.publishers_by_topic[topic].publish(raw)
            if topic in self.stamped_pcm:
                self._publish_stamped_pcm(topic, raw, t_ns)
            self.published += 1

    def _on_paced(self, topic: str, msg: JointState) -> None:
        self._newest[topic] = max(self._newest.get(topic, 0), messages.stamp_to_ns(msg.header.stamp))

    def _graph_lags(self, t_ns: int) -> bool:
        """A pace topic that has published is more than ``max_lag_s`` behind ``t_ns`` (its node
        is still working through older input; it never waits for the clock, so this cannot
        deadlock)."""
        limit_ns = t_ns - self.settings.max_lag_s * 1e9
        return any(self._newest.get(topic, limit_ns) < limit_ns and self.count_publishers(topic)
                   for topic in self.pace_topics)

    def _publish_stamped_pcm(self, topic: str, raw: bytes, t_ns: int) -> None:
        try:
            pcm = messages.pcm_from_msg(deserialize_message(raw, Int16MultiArray))
        except messages.MessageError:
            return  # the speech node reports bad audio on the unstamped topic too
        self.stamped_pcm[topic].publish(messages.fill_stamped_pcm(Image(), pcm, t_ns, frame_id="bag"))

    def _publish_clock(self, t_ns: int) -> None:
        self._last_clock_ns = t_ns
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(int(t_ns), 1_000_000_000)
        self.clock_pub.publish(msg)

    def destroy_node(self) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:  # exit_on_end shuts down from the player thread
            self._thread.join(timeout=2.0)
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return base.run_node(BagPlayerNode, args)
