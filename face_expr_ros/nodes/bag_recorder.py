"""Bag recorder node: writes the listed topics to a new rosbag2 (sqlite3 or mcap).

Topic types are discovered from the graph, so a topic is recorded from the moment it has a
publisher. Messages are stored as received (serialised CDR), stamped with the receive time
on this node's clock (sim time when ``use_sim_time`` is set).
"""

from __future__ import annotations

import threading

import numpy as np
from rclpy.node import Node

from face_expr_ros import bags, config
from face_expr_ros.nodes import base

DISCOVERY_PERIOD_S = 0.2


class BagRecorderNode(Node):
    def __init__(self, **node_kwargs: object) -> None:
        super().__init__("bag_recorder", **node_kwargs)
        s = self.settings = base.declare_settings(self, config.BagRecorderSettings)
        if not s.out:
            raise config.ConfigError("node bag_recorder: parameter 'out' is empty; give a folder to create")
        self.wanted = [t.strip() for t in s.topics.split(",") if t.strip()]
        try:
            self.writer = bags.BagWriter(s.out, storage=s.storage)
        except bags.BagError as err:
            raise config.ConfigError(f"node bag_recorder: {err}") from None
        self.writer.__enter__()
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self._subscribed: set[str] = set()
        base.steady_timer(self, DISCOVERY_PERIOD_S, self.discover)
        self.get_logger().info(f"recording {', '.join(self.wanted)} to {s.out}")

    def discover(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self.wanted and topic not in self._subscribed and types:
                msgtype = types[0]
                self.create_subscription(base.message_class(msgtype), topic,
                                         lambda msg, t=topic, m=msgtype: self.on_message(t, m, msg), base.STREAM_QOS)
                self._subscribed.add(topic)

    def on_message(self, topic: str, msgtype: str, msg: object) -> None:
        converted = to_rosbags(msg, msgtype)
        with self._lock:
            if self.writer is None:
                return
            self.writer.write(topic, converted, self.get_clock().now().nanoseconds)
            self.counts[topic] = self.counts.get(topic, 0) + 1

    def close(self) -> None:
        with self._lock:
            if self.writer is not None:
                self.writer.__exit__(None, None, None)
                self.writer = None

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def to_rosbags(msg: object, msgtype: str) -> object:
    """An rclpy message as the equivalent ``rosbags`` message, field by field.

    Bags are serialised by rosbags rather than by rclpy: this client library's CDR for some
    types (e.g. JointState) differs in padding from what rosbags and mcap's decoder read.
    """
    cls = bags.typestore().types[msgtype]
    fields = {}
    for name, kind in msg.get_fields_and_field_types().items():
        value = getattr(msg, name)
        base = kind.split("<", 1)[-1].rstrip(">").split("[", 1)[0]
        if "/" in base:
            package, _, type_name = base.partition("/")
            nested = f"{package}/msg/{type_name}"
            if kind.startswith("sequence") or "[" in kind:
                fields[name] = [to_rosbags(v, nested) for v in value]
            else:
                fields[name] = to_rosbags(value, nested)
        elif kind.startswith("sequence") or "[" in kind:
            fields[name] = list(value) if base == "string" else np.asarray(value)
        else:
            fields[name] = value
    return cls(**fields)


def main(args: list[str] | None = None) -> int:
    return base.run_node(BagRecorderNode, args)
