"""Face tracker node: camera images in, the speaker's 55-d expression out.

One message per image it tracks, with the image's stamp, so latency can be measured from the
camera to any output: the 55 named values when a face is seen, and an empty ``JointState``
(no names, no values) when there is none. The empty message tells the policy that the frame
has been looked at and holds no face, so it need not wait for it; consumers that only want
faces skip messages without names.
"""

from __future__ import annotations

import time

import numpy as np
from rclpy.node import Node
from rclpy.time import Time
from sensor_msgs.msg import CompressedImage, Image, JointState

from face_expr_ros import config, messages
from face_expr_ros.nodes import base


class FaceTrackerNode(Node):
    def __init__(self, **node_kwargs: object) -> None:
        super().__init__("face_tracker", **node_kwargs)
        self.settings = base.declare_settings(self, config.FaceTrackerSettings)
        from face_expr_ros.perception.face_tracker import FaceTracker

        s = self.settings
        self.tracker = FaceTracker(channel_order="bgr", min_detection_confidence=s.min_detection_confidence,
                                   min_tracking_confidence=s.min_tracking_confidence)
        qos = base.REPLAY_IMAGE_QOS if s.reliable_images else base.IMAGE_QOS
        if s.compressed:
            self.create_subscription(CompressedImage, s.image_topic + "/compressed", self.on_compressed, qos)
        else:
            self.create_subscription(Image, s.image_topic, self.on_image, qos)
        self.publisher = self.create_publisher(JointState, s.expression_topic, base.STREAM_QOS)
        self.report = base.ReportOnce(self)
        self.meter = base.RateMeter()
        self.faces = 0
        self.last_stamp_ns = -1
        self.diagnostics = base.Diagnostics(self, s.diagnostics_period_s, self.update_diagnostics)
        topic = s.image_topic + ("/compressed" if s.compressed else "")
        self.get_logger().info(f"tracking faces on {topic} -> {s.expression_topic}")

    def on_image(self, msg: Image) -> None:
        try:
            image = messages.image_to_bgr(msg)
        except messages.MessageError as err:
            self.report("bad_image", f"dropping images from {self.settings.image_topic}: {err}", key=str(err))
            return
        self.process(image, msg.header)

    def on_compressed(self, msg: CompressedImage) -> None:
        import cv2

        image = cv2.imdecode(np.frombuffer(msg.data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            self.report("bad_image", f"dropping CompressedImage with format {msg.format!r}: it does not decode",
                        key=msg.format)
            return
        self.process(image, msg.header)

    def process(self, image: np.ndarray, header: object) -> None:
        now_ns = self.get_clock().now().nanoseconds
        max_age_ns = self.settings.max_image_age_s * 1e9
        stamp_ns = messages.stamp_to_ns(header.stamp)
        if stamp_ns == 0 and now_ns > max_age_ns:
            # Unstamped (a zero stamp that cannot be a recent time): date it on arrival. A zero
            # stamp near a zero clock is real: the first frame of a bag that starts at 0.
            stamp_ns = now_ns
        if stamp_ns <= self.last_stamp_ns:
            self.report("out_of_order", f"dropping an image stamped {stamp_ns} ns, not after {self.last_stamp_ns} ns")
            return
        if now_ns - stamp_ns > max_age_ns:
            age = (now_ns - stamp_ns) / 1e9
            self.report("late", f"dropping images older than {self.settings.max_image_age_s} s (one was {age:.2f} s; "
                                "replaying a bag? run with use_sim_time and the player's /clock)")
            return
        self.last_stamp_ns = stamp_ns
        start = time.perf_counter()
        try:
            observation = self.tracker.process(image)
        except ValueError as err:
            self.report("bad_image", f"dropping an unusable image: {err}", key=str(err))
            return
        self.meter.tick(time.perf_counter() - start)
        out = JointState()
        out.header.stamp = Time(nanoseconds=stamp_ns).to_msg()
        out.header.frame_id = "speaker_face"
        if observation.face_present:
            self.faces += 1
            messages.fill_joint_state(out, observation.expression)
        self.publisher.publish(out)

    def update_diagnostics(self) -> None:
        self.diagnostics.set(frames=self.meter.count, faces=self.faces, rate_hz=f"{self.meter.rate_hz():.1f}",
                             track_ms_p50=f"{self.meter.latency_ms(0.5):.1f}",
                             track_ms_p99=f"{self.meter.latency_ms(0.99):.1f}",
                             **{f"dropped_{k}": v for k, v in self.report.counts.items()})


def main(args: list[str] | None = None) -> int:
    return base.run_node(FaceTrackerNode, args)
