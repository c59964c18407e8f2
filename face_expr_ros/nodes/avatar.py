"""Avatar node: listener expressions in, a rendered face out (image topic, optional window)."""

from __future__ import annotations

import time

from rclpy.node import Node
from sensor_msgs.msg import Image, JointState

from face_expr_ros import config, messages
from face_expr_ros import expression as ex
from face_expr_ros.nodes import base


class AvatarNode(Node):
    def __init__(self, **node_kwargs: object) -> None:
        super().__init__("avatar", **node_kwargs)
        s = self.settings = base.declare_settings(self, config.AvatarSettings)
        from face_expr_ros.rig.render import MeshRenderer, PhotoRenderer

        try:
            self.renderer = (MeshRenderer(size=s.size) if s.avatar == "mesh"
                             else PhotoRenderer(s.photo or None, size=s.size))
        except (ValueError, OSError) as err:
            raise config.ConfigError(f"node avatar: photo {s.photo!r}: {err}") from None
        self.report = base.ReportOnce(self)
        self.meter = base.RateMeter()
        self.latest = ex.NEUTRAL.copy()
        self.stamp = None
        self.create_subscription(JointState, s.expression_topic, self.on_expression, base.STATE_QOS)
        self.publisher = self.create_publisher(Image, s.image_topic, base.IMAGE_QOS)
        base.steady_timer(self, 1.0 / s.rate_hz, self.tick)
        self.diagnostics = base.Diagnostics(self, s.diagnostics_period_s, self.update_diagnostics)

    def on_expression(self, msg: JointState) -> None:
        try:
            self.latest = messages.expression_from_joint_state(msg)
            self.stamp = msg.header.stamp
        except messages.MessageError as err:
            self.report("bad_expression", f"dropping expressions: {err}", key=str(err))

    def tick(self) -> None:
        import cv2

        start = time.perf_counter()
        bgr = cv2.cvtColor(self.renderer.render(self.latest), cv2.COLOR_RGB2BGR)
        self.meter.tick(time.perf_counter() - start)
        msg = messages.fill_image(Image(), bgr, "bgr8")
        msg.header.stamp = self.stamp if self.stamp is not None else self.get_clock().now().to_msg()
        msg.header.frame_id = "avatar"
        self.publisher.publish(msg)
        if self.settings.show_window:
            cv2.imshow("face_expr_ros avatar", bgr)
            cv2.waitKey(1)

    def update_diagnostics(self) -> None:
        self.diagnostics.set(rate_hz=f"{self.meter.rate_hz():.1f}", render_ms_p50=f"{self.meter.latency_ms(0.5):.1f}",
                             avatar=self.settings.avatar,
                             **{f"dropped_{k}": v for k, v in self.report.counts.items()})


def main(args: list[str] | None = None) -> int:
    return base.run_node(AvatarNode, args)
