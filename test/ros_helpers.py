"""Helpers for tests that run nodes as separate processes and watch them from a probe node."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from face_expr_ros.demo import stop_processes


def node_env(domain: int) -> dict[str, str]:
    return {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "PYTHONUNBUFFERED": "1"}


def start(name: str, params: Path, domain: int, log_dir: Path, *extra: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / f"{name}_node"
    log = (log_dir / f"{name}.log").open("w")
    return subprocess.Popen([str(exe), "--ros-args", "--params-file", str(params), *extra],
                            env=node_env(domain), stdout=log, stderr=subprocess.STDOUT)


def stop(procs: list[subprocess.Popen]) -> None:
    stop_processes(procs, timeout=10.0)


class Probe:
    """Subscribes to the graph's outputs and keeps what arrives."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float64MultiArray

        from face_expr_ros.nodes.base import STATE_QOS

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("probe", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.speaker: list[tuple[float, object]] = []  # tracked faces
        self.no_face: list[tuple[float, object]] = []  # frames the tracker saw no face in
        self.expression: list[tuple[float, object]] = []
        self.commands: list[tuple[float, object]] = []
        self.images: list[object] = []
        self.diagnostics: dict[str, object] = {}

        def keep(store: list) -> object:
            return lambda msg: store.append((time.monotonic(), msg))

        self.node.create_subscription(
            JointState, "/face_expr/speaker_expression",
            lambda msg: (self.speaker if msg.name else self.no_face).append((time.monotonic(), msg)), STATE_QOS)
        self.node.create_subscription(JointState, "/face_expr/expression", keep(self.expression), STATE_QOS)
        self.node.create_subscription(Float64MultiArray, "/face_controller/commands", keep(self.commands), STATE_QOS)
        self.node.create_subscription(Image, "/face_expr/avatar/image", self.images.append, qos_profile_sensor_data)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.on_diagnostics, STATE_QOS)

    def on_diagnostics(self, msg: object) -> None:
        for status in msg.status:
            self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values}

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


