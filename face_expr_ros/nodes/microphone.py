"""Microphone node: a sounddevice input stream published as std_msgs/Int16MultiArray chunks."""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Int16MultiArray

from face_expr_ros import config
from face_expr_ros.nodes import base


class MicrophoneNode(Node):
    def __init__(self, **node_kwargs: object) -> None:
        super().__init__("microphone", **node_kwargs)
        s = self.settings = base.declare_settings(self, config.MicrophoneSettings)
        try:
            import sounddevice
        except OSError as err:
            raise config.ConfigError(f"node microphone: PortAudio is not usable ({err}); "
                                     "apt-get install libportaudio2") from None
        device: int | str | None = int(s.device) if s.device.isdigit() else (s.device or None)
        self.publisher = self.create_publisher(Int16MultiArray, s.audio_topic, base.AUDIO_QOS)
        self.meter = base.RateMeter()
        try:
            self.stream = sounddevice.InputStream(
                samplerate=s.sample_rate, channels=1, dtype="int16", device=device,
                blocksize=max(1, int(s.sample_rate * s.chunk_ms / 1000)), callback=self.on_block,
            )
            self.stream.start()
        except Exception as err:  # noqa: BLE001 - PortAudio reports missing devices in many ways
            raise config.ConfigError(
                f"node microphone: no usable audio input device {s.device or '(default)'}: {err}. "
                "`face-expr doctor` lists the devices; without a microphone, replay a bag instead"
            ) from None
        self.diagnostics = base.Diagnostics(
            self, s.diagnostics_period_s, lambda: self.diagnostics.set(chunk_rate_hz=f"{self.meter.rate_hz():.1f}")
        )

    def on_block(self, block: np.ndarray, frames: int, time_info: object, status: object) -> None:
        self.publisher.publish(Int16MultiArray(data=block[:, 0].astype(np.int16).tolist()))
        self.meter.tick()

    def destroy_node(self) -> None:
        self.stream.stop()
        self.stream.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return base.run_node(MicrophoneNode, args)
