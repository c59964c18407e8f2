"""Bag player node: replays a rosbag2 (sqlite3 or mcap) onto the graph in real time.

Messages keep their recorded spacing (scaled by ``rate``) and are published as the bag's raw
CDR bytes, so any message type plays without conversion. With ``publish_clock`` the player
also drives ``/clock`` from the bag's time, for nodes running with ``use_sim_time``.
"""

from __future__ import annotations

import threading
import time

from rclpy.node import Node
from rosgraph_msgs.msg import Clock

from face_expr_ros import bags, config
from face_expr_ros.nodes import base

CLOCK_PERIOD_S = 0.01


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
        self.clock_pub = self.create_publisher(Clock, "/clock", base.CLOCK_QOS) if s.publish_clock else None
        self.published = 0
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, daemon=True)
        self._thread.start()
        self.get_logger().info(f"playing {s.bag} ({len(wanted)} topics) at {s.rate:g}x"
                               + (" with /clock" if s.publish_clock else ""))

    def _play(self) -> None:
        s = self.settings
        if self._stop.wait(s.start_delay_s):
            return
        while True:
            self._play_once()
            if not s.loop or self._stop.is_set():
                break
        self.finished.set()
        self.get_logger().info(f"finished {s.bag}: {self.published} messages")
        if s.exit_on_end:
            self.context.try_shutdown()

    def _play_once(self) -> None:
        rate = self.settings.rate
        start_wall, first_ns, next_clock = time.monotonic(), None, 0.0
        for topic, _msgtype, t_ns, raw in bags.read_bag_raw(self.settings.bag, self.topics):
            first_ns = t_ns if first_ns is None else first_ns
            due = start_wall + (t_ns - first_ns) / 1e9 / rate
            while (wait := due - time.monotonic()) > 0:
                if self.clock_pub is not None and time.monotonic() >= next_clock:
                    self._publish_clock(first_ns + int((time.monotonic() - start_wall) * rate * 1e9))
                    next_clock = time.monotonic() + CLOCK_PERIOD_S
                if self._stop.wait(min(wait, CLOCK_PERIOD_S)):
                    return
            if self.clock_pub is not None:
                self._publish_clock(t_ns)
            self.publishers_by_topic[topic].publish(raw)
            self.published += 1

    def _publish_clock(self, t_ns: int) -> None:
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
