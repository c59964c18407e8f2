"""Webcam node: an OpenCV camera published as sensor_msgs/Image, for machines without a driver."""

from __future__ import annotations

from rclpy.node import Node
from sensor_msgs.msg import Image

from face_expr_ros import config, messages
from face_expr_ros.nodes import base


class WebcamNode(Node):
    def __init__(self, **node_kwargs: object) -> None:
        super().__init__("webcam", **node_kwargs)
        s = self.settings = base.declare_settings(self, config.WebcamSettings)
        import cv2

        self.capture = cv2.VideoCapture(s.device)
        if not self.capture.isOpened():
            raise config.ConfigError(
                f"node webcam: camera device {s.device} cannot be opened (is /dev/video{s.device} there, "
                "and not in use?); `face-expr doctor` lists the cameras"
            )
        self.capture.set(cv2.CAP_PROP_FRAME_WIDTH, s.width)
        self.capture.set(cv2.CAP_PROP_FRAME_HEIGHT, s.height)
        self.capture.set(cv2.CAP_PROP_FPS, s.fps)
        self.publisher = self.create_publisher(Image, s.image_topic, base.IMAGE_QOS)
        self.report = base.ReportOnce(self)
        self.meter = base.RateMeter()
        base.steady_timer(self, 1.0 / s.fps, self.tick)
        self.diagnostics = base.Diagnostics(self, s.diagnostics_period_s, self.update_diagnostics)

    def tick(self) -> None:
        ok, frame = self.capture.read()
        if not ok:
            self.report("read_failed", f"camera {self.settings.device} returned no frame")
            return
        msg = messages.fill_image(Image(), frame, "bgr8")
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.settings.frame_id
        self.publisher.publish(msg)
        self.meter.tick()

    def update_diagnostics(self) -> None:
        self.diagnostics.set(rate_hz=f"{self.meter.rate_hz():.1f}", frames=self.meter.count,
                             **{k: v for k, v in self.report.counts.items()})

    def destroy_node(self) -> None:
        self.capture.release()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return base.run_node(WebcamNode, args)
