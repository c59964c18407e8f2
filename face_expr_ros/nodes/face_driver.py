"""Face driver node: listener expressions in, position commands for the robot's face out.

Commands go out at a fixed rate through the robot-face map (``robot.face_map``), which keeps
every actuator inside its position and velocity limits whatever arrives. When expressions
stop coming (policy restarted, link lost) the face returns to its default pose at the
actuators' speed limits.
"""

from __future__ import annotations

import time
from pathlib import Path

from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from face_expr_ros import config, messages
from face_expr_ros.nodes import base

EXPRESSION_TIMEOUT_S = 1.0


class FaceDriverNode(Node):
    def __init__(self, **node_kwargs: object) -> None:
        super().__init__("face_driver", **node_kwargs)
        s = self.settings = base.declare_settings(self, config.FaceDriverSettings)
        from face_expr_ros.robot.face_map import FaceMapError, RobotFaceMap

        path = Path(s.robot_face)
        if not path.is_absolute() and not path.exists():
            path = config.package_share() / "config" / path
        try:
            self.face_map = RobotFaceMap.from_yaml(path)
        except (FaceMapError, OSError) as err:
            raise config.ConfigError(f"node face_driver: robot_face {str(path)!r}: {err}") from None
        self.report = base.ReportOnce(self)
        self.meter = base.RateMeter()
        self.latest = None
        self.latest_time = -1e9
        self.last_tick = time.monotonic()
        self.create_subscription(JointState, s.expression_topic, self.on_expression, base.STATE_QOS)
        kind = Float64MultiArray if s.command_type == "float64_multi_array" else JointTrajectory
        self.publisher = self.create_publisher(kind, s.command_topic, base.STATE_QOS)
        base.steady_timer(self, 1.0 / s.rate_hz, self.tick)  # actuators live in wall time
        self.diagnostics = base.Diagnostics(self, s.diagnostics_period_s, self.update_diagnostics)
        self.get_logger().info(f"driving {len(self.face_map.joint_names)} actuators of {self.face_map.name} "
                               f"on {s.command_topic} at {s.rate_hz:g} Hz")

    def on_expression(self, msg: JointState) -> None:
        try:
            self.latest = messages.expression_from_joint_state(msg)
        except messages.MessageError as err:
            self.report("bad_expression", f"dropping expressions: {err}", key=str(err))
            return
        self.latest_time = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        dt, self.last_tick = now - self.last_tick, now
        if self.latest is None or now - self.latest_time > EXPRESSION_TIMEOUT_S:
            command = self.face_map.step_to_default(dt)
        else:
            command = self.face_map.step(self.latest, dt)
        self.meter.tick()
        if self.settings.command_type == "float64_multi_array":
            self.publisher.publish(Float64MultiArray(data=command.tolist()))
        else:
            trajectory = JointTrajectory(joint_names=list(self.face_map.joint_names))
            point = JointTrajectoryPoint(positions=command.tolist())
            point.time_from_start.nanosec = int(1e9 / self.settings.rate_hz)
            trajectory.points = [point]
            self.publisher.publish(trajectory)

    def update_diagnostics(self) -> None:
        self.diagnostics.set(rate_hz=f"{self.meter.rate_hz():.1f}", commands=self.meter.count,
                             rejected_inputs=self.face_map.rejected_inputs,
                             joints=",".join(self.face_map.joint_names),
                             **{f"dropped_{k}": v for k, v in self.report.counts.items()})


def main(args: list[str] | None = None) -> int:
    return base.run_node(FaceDriverNode, args)
