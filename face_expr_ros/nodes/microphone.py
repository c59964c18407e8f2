"""Microphone node: a sounddevice input stream published as PCM chunks, unstamped and stamped.

Each block goes out twice: as ``std_msgs/Int16MultiArray`` on ``audio_topic`` (what common
audio drivers publish) and as stamped PCM on ``<audio_topic>/stamped``
(``messages.STAMPED_PCM_ENCODING``), stamped with the time just after its last sample was
captured, for the speech node's ``stamped_audio``.
"""

from __future__ import annotations

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Int16MultiArray

from face_expr_ros import config, messages
from face_expr_ros.nodes import base


def capture_end_ns(now_ns: int, n_samples: int, sample_rate: int, time_info: object) -> int:
    """When the block's last sample was captured, on the node's clock.

    PortAudio gives the ADC time of the block's first sample and the current time on its own
    stream clock; their difference is how long ago the block started. Host APIs that do not
    report them (zeros) leave the callback time, which is later by the input latency.
    """
    adc = float(getattr(time_info, "inputBufferAdcTime", 0.0) or 0.0)
    current = float(getattr(time_info, "currentTime", 0.0) or 0.0)
    if adc > 0.0 and current > 0.0 and 0.0 <= current - adc < 1.0:
        return now_ns - round((current - adc) * 1e9) + round(n_samples * 1e9 / sample_rate)
    return now_ns


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
        self.stamped_publisher = self.create_publisher(Image, s.audio_topic + "/stamped", base.AUDIO_QOS)
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
        pcm = block[:, 0].astype(np.int16)
        end_ns = capture_end_ns(self.get_clock().now().nanoseconds, pcm.size, self.settings.sample_rate, time_info)
        self.publisher.publish(Int16MultiArray(data=pcm.tolist()))
        self.stamped_publisher.publish(messages.fill_stamped_pcm(Image(), pcm, end_ns))
        self.meter.tick()

    def destroy_node(self) -> None:
        self.stream.stop()
        self.stream.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return base.run_node(MicrophoneNode, args)
