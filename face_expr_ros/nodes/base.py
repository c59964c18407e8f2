"""What every face_expr_ros node shares: parameters from the settings schema, diagnostics.

Parameters are declared from the node's settings dataclass (``face_expr_ros.config``), with
their help text as the ROS description, and validated by the same code that checks
parameter files, so a bad value fails at start-up with the same message wherever it came
from (``--params-file``, ``-p``, or ``face-expr bringup``).
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from typing import Any, TypeVar

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy

from face_expr_ros import config

S = TypeVar("S", bound=config.NodeSettings)

DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


def declare_settings(node: Node, schema: type[S]) -> S:
    """Declare one ROS parameter per schema field and return the validated settings.

    ``use_sim_time`` is declared by rclpy itself; it is read, not redeclared.
    """
    values: dict[str, Any] = {}
    for f in dataclasses.fields(schema):
        if f.name == "use_sim_time":
            values[f.name] = node.get_parameter("use_sim_time").value
            continue
        # dynamic_typing: type checks are ours, so that messages match those for files.
        descriptor = ParameterDescriptor(description=f.metadata.get("help", ""), dynamic_typing=True)
        node.declare_parameter(f.name, f.default, descriptor)
        values[f.name] = node.get_parameter(f.name).value
    return config.settings_from_mapping(schema, values, f"node {node.get_fully_qualified_name()}")


def overrides_from_file(path: str, node_name: str) -> list[Parameter]:
    """rclpy parameter overrides for one node from a ROS 2 parameter file (for in-process bringup)."""
    sections = config.read_parameter_file(path)
    merged = {**sections.get(config.WILDCARD, {}), **sections.get(node_name, {})}
    return [Parameter(name, value=value) for name, value in merged.items()]


class RateMeter:
    """Events per second and latency percentiles over a sliding window of recent events."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._latencies: deque[float] = deque(maxlen=1000)
        self.count = 0

    def tick(self, latency_s: float | None = None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        self.count += 1
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if latency_s is not None:
            self._latencies.append(latency_s)

    def rate_hz(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        recent = [t for t in self._times if now - t <= self.window_s]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)

    def latency_ms(self, q: float) -> float:
        if not self._latencies:
            return float("nan")
        ordered = sorted(self._latencies)
        return 1000.0 * ordered[min(int(q * len(ordered)), len(ordered) - 1)]


class Diagnostics:
    """Publishes one DiagnosticStatus for a node on /diagnostics at a fixed period."""

    def __init__(self, node: Node, period_s: float, hardware_id: str = "face_expr_ros") -> None:
        self._node = node
        self._hardware_id = hardware_id
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self._fields: dict[str, str] = {}
        self._level = DiagnosticStatus.OK
        self._message = "running"
        node.create_timer(period_s, self.publish)

    def set(self, **fields: object) -> None:
        self._fields.update({k: str(v) for k, v in fields.items()})

    def status(self, level: bytes, message: str) -> None:
        """``level`` is one of DiagnosticStatus.OK / WARN / ERROR / STALE."""
        self._level, self._message = level, message

    def publish(self) -> None:
        status = DiagnosticStatus(
            level=self._level,
            name=f"face_expr_ros: {self._node.get_name()}",
            message=self._message,
            hardware_id=self._hardware_id,
            values=[KeyValue(key=k, value=v) for k, v in sorted(self._fields.items())],
        )
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self._node.get_clock().now().to_msg()
        self._pub.publish(msg)
