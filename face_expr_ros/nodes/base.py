"""What every face_expr_ros node shares: parameters from the settings schema, diagnostics.

Parameters are declared from the node's settings dataclass (``face_expr_ros.config``), with
their help text as the ROS description, and validated by the same code that checks
parameter files, so a bad value fails at start-up with the same message wherever it came
from (``--params-file``, ``-p``, or ``face-expr bringup``).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from face_expr_ros import config

S = TypeVar("S", bound=config.NodeSettings)

# QoS per kind of topic (documented in docs/architecture.md). Camera and avatar images are
# best effort, depth 1: a late frame is worth nothing and must not queue up; a best-effort
# subscriber also matches the best-effort publishers of common camera drivers. Audio is
# reliable and deep: a lost chunk is a gap in the speech. Expressions, transcripts, commands
# and ratings are reliable: small, and each one matters.
IMAGE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
# For replays: every frame is processed, in order, however long the queue gets.
REPLAY_IMAGE_QOS = QoSProfile(depth=300, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
AUDIO_QOS = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
STATE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
# The perception streams the policy steps on (speaker expression, audio features, words), at
# both ends, and the recorder's subscriptions: reliable and deep, so that a subscriber that
# falls behind for a while (a loaded machine, a whole graph in one process, the burst of
# progress messages after the recogniser decodes an utterance) still gets every message, which
# exact replays depend on. Their callbacks only store what arrives, so a deep queue never makes
# anything act on stale data.
STREAM_QOS = QoSProfile(depth=300, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
CLOCK_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, durability=DurabilityPolicy.VOLATILE)
DIAGNOSTICS_QOS = STATE_QOS


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
    settings = config.settings_from_mapping(schema, values, f"node {node.get_fully_qualified_name()}")
    node.cpu_scheduling = apply_scheduling(node, settings)  # reported on /diagnostics
    return settings


# Set by ``run_node`` (a node executable: one node per process). Elsewhere (``face-expr
# bringup``, which runs every node in one process, or a node built inside a test) a node's
# scheduling parameters would apply to everything in the process, so they are not applied.
OWN_PROCESS = False


def _process_threads() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: the calling thread only
        return [0]


def _on_every_thread(set_thread: Callable[[int], None]) -> None:
    """``set_thread(tid)`` for the calling thread (0) and every thread of the process."""
    for tid in [0, *_process_threads()]:
        try:
            set_thread(tid)
        except ProcessLookupError:  # a thread that ended meanwhile
            pass


def apply_scheduling(node: Node, settings: config.NodeSettings) -> str:
    """Give the node's process the CPU scheduling its ``realtime_priority`` / ``nice`` ask for.

    Applied to every thread the process already has (the middleware's) and to the calling
    thread, so the threads the node starts later (MediaPipe's, ONNX Runtime's) inherit it; a
    thread that must not run at real-time priority calls :func:`background_thread`. Returns
    what was applied, for the log and /diagnostics. When the OS refuses (no CAP_SYS_NICE, or a
    container without real-time budget), the node warns once and runs with the normal scheduler.
    """
    prio, nice = settings.realtime_priority, settings.nice
    if prio == 0 and nice == 0:
        return "normal"
    log = node.get_logger()
    if not OWN_PROCESS:
        log.info(f"realtime_priority {prio} / nice {nice} not applied: the node shares its process "
                 "(bringup, or built in a program); they apply to node executables")
        return "normal (shared process)"
    if not hasattr(os, "sched_setscheduler"):
        log.warning(f"realtime_priority {prio} / nice {nice}: this OS has no sched_setscheduler; running normally")
        return "normal (unsupported)"
    try:
        if prio > 0:
            param = os.sched_param(prio)
            _on_every_thread(lambda tid: os.sched_setscheduler(tid, os.SCHED_RR, param))
            applied = f"SCHED_RR {prio}"
        else:
            # Absolute, so a launch-file `nice` prefix is harmless.
            _on_every_thread(lambda tid: os.setpriority(os.PRIO_PROCESS, tid, nice))
            applied = f"nice {nice}"
    except PermissionError as err:
        what = f"SCHED_RR priority {prio}" if prio > 0 else f"nice {nice}"
        log.warning(f"could not set {what} ({err.strerror}; needs CAP_SYS_NICE or an rtprio/nice limit, "
                    "e.g. in /etc/security/limits.conf): running with the normal scheduler, so other "
                    "processes can delay this node")
        return "normal (refused)"
    log.info(f"CPU scheduling: {applied}")
    return applied


def background_thread(nice: int = 5) -> None:
    """Move the calling thread to the normal scheduler at ``nice``: for work off the node's
    real-time path (the policy's transcript embedding), which must not take the cores from it."""
    if not hasattr(os, "sched_setscheduler"):
        return
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # Linux: 0 is the calling thread
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)  # niceness is per thread on Linux
    except OSError:
        pass  # unprivileged: it was not raised either, except by nice, which stays as it was


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


def steady_timer(node: Node, period_s: float, callback: Callable[[], None]) -> object:
    """A timer on the monotonic wall clock, also under use_sim_time: for what must keep running
    when a bag pauses or ends (diagnostics, actuator commands, rendering)."""
    from rclpy.clock import Clock, ClockType

    return node.create_timer(period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))


class Diagnostics:
    """Publishes one DiagnosticStatus for a node on /diagnostics at a fixed wall-clock period,
    calling ``update`` first to refresh the values."""

    def __init__(self, node: Node, period_s: float, update: Callable[[], None] | None = None,
                 hardware_id: str = "face_expr_ros") -> None:
        self._node = node
        self._hardware_id = hardware_id
        self._update = update
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self._fields: dict[str, str] = {"cpu_scheduling": str(getattr(node, "cpu_scheduling", "normal"))}
        self._level = DiagnosticStatus.OK
        self._message = "running"
        steady_timer(node, period_s, self.publish)

    def set(self, **fields: object) -> None:
        self._fields.update({k: str(v) for k, v in fields.items()})

    def status(self, level: bytes, message: str) -> None:
        """``level`` is one of DiagnosticStatus.OK / WARN / ERROR / STALE."""
        self._level, self._message = level, message

    def publish(self) -> None:
        if self._update is not None:
            self._update()
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


def message_class(msgtype: str) -> type:
    """The rclpy message class of a ROS type name such as ``sensor_msgs/msg/Image``."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        raise ValueError(f"message type {msgtype} is not available in this ROS 2 install") from None


class ReportOnce:
    """Log each distinct problem once (with its offending value) and count every occurrence.

    Problems are told apart by ``kind`` and ``key``: pass the offending value as ``key`` where
    each value deserves its own report (e.g. each unsupported encoding), and nothing where one
    report per kind is enough (e.g. late frames, whose ages all differ).
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        self._seen: set[tuple[str, str]] = set()
        self.counts: dict[str, int] = {}

    def __call__(self, kind: str, message: str, key: str = "") -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if (kind, key) not in self._seen:
            self._seen.add((kind, key))
            self._node.get_logger().warning(f"{message} (reported once; counted in /diagnostics)")


def run_node(factory: Callable[[], Node], args: list[str] | None = None) -> int:
    """Spin one node until Ctrl-C or shutdown; a configuration error ends it with exit code 2."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    global OWN_PROCESS
    OWN_PROCESS = True
    rclpy.init(args=args)
    node = None
    try:
        node = factory()
        rclpy.spin(node)
    except config.ConfigError as err:
        print(f"[face_expr_ros] configuration error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
