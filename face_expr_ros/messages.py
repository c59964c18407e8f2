"""Conversions between numpy arrays and ROS message fields, without rclpy or cv_bridge.

The functions read and fill message *fields* (``height``, ``encoding``, ``data``, ...), so
they work on rclpy message classes and on the ``rosbags`` dataclasses alike: nodes and bag
tools share one implementation. Bad messages raise ``MessageError`` naming the offending
field and value.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import expression as ex

# sensor_msgs/Image encodings we read: encoding -> (channels, dtype, channel order).
IMAGE_ENCODINGS: dict[str, tuple[int, type, str]] = {
    "bgr8": (3, np.uint8, "bgr"),
    "rgb8": (3, np.uint8, "rgb"),
    "bgra8": (4, np.uint8, "bgra"),
    "rgba8": (4, np.uint8, "rgba"),
    "mono8": (1, np.uint8, "gray"),
    "8UC1": (1, np.uint8, "gray"),
    "8UC3": (3, np.uint8, "bgr"),
    "mono16": (1, np.uint16, "gray"),
}


class MessageError(ValueError):
    """A message whose contents cannot be used; the text names the field and the value."""


def image_to_bgr(msg: Any) -> NDArray[np.uint8]:
    """A sensor_msgs/Image as an (H, W, 3) uint8 BGR array (a copy).

    Grey images are replicated to three channels, alpha is dropped, mono16 is scaled to 8 bit.
    """
    encoding = str(msg.encoding)
    if encoding not in IMAGE_ENCODINGS:
        raise MessageError(
            f"Image.encoding {encoding!r} is not supported; use one of {', '.join(IMAGE_ENCODINGS)}"
        )
    channels, dtype, order = IMAGE_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise MessageError(f"Image is empty: height={height}, width={width}")
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    data = np.frombuffer(bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data.tobytes(),
                         dtype=np.uint8)
    if step < row_bytes or data.size < step * height:
        raise MessageError(
            f"Image.data holds {data.size} bytes, but {encoding} {width}x{height} with step {step} "
            f"needs {step * height} (step >= {row_bytes})"
        )
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    pixels = rows.copy().view(np.dtype(dtype).newbyteorder(">" if getattr(msg, "is_bigendian", 0) else "<"))
    pixels = pixels.reshape(height, width, channels)
    if dtype is np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    if order == "gray":
        return np.repeat(pixels, 3, axis=2)
    if order in ("rgb", "rgba"):
        return np.ascontiguousarray(pixels[..., 2::-1])
    return np.ascontiguousarray(pixels[..., :3])


def fill_image(msg: Any, image: NDArray[np.uint8], encoding: str = "bgr8") -> Any:
    """Fill an Image message from an (H, W, 3) BGR (or (H, W) grey, with mono8) array."""
    if image.dtype != np.uint8:
        raise MessageError(f"image dtype must be uint8, got {image.dtype}")
    if encoding == "mono8":
        if image.ndim != 2:
            raise MessageError(f"mono8 needs an (H, W) array, got shape {image.shape}")
        channels = 1
        pixels = image
    elif encoding in ("bgr8", "rgb8"):
        if image.ndim != 3 or image.shape[2] != 3:
            raise MessageError(f"{encoding} needs an (H, W, 3) BGR array, got shape {image.shape}")
        channels = 3
        pixels = image if encoding == "bgr8" else image[..., ::-1]
    else:
        raise MessageError(f"cannot write Image encoding {encoding!r}; use bgr8, rgb8 or mono8")
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(image.shape[1] * channels)
    _set_bytes(msg, np.ascontiguousarray(pixels).reshape(-1))
    return msg


def _set_bytes(msg: Any, data: NDArray[np.uint8]) -> None:
    """Set a ``uint8[]`` field named ``data``, in the form the message class holds it.

    rclpy messages hold it as ``array.array('B')``: filled from bytes it is one copy, whereas
    assigning a numpy array converts element by element (about 0.2 s for a 640x480 image).
    ``rosbags`` messages hold numpy arrays.
    """
    if isinstance(msg.data, array.array):
        msg.data = array.array("B", data.tobytes())
    else:
        msg.data = data


def expression_from_joint_state(msg: Any) -> NDArray[np.float32]:
    """The 55-d frame carried by a sensor_msgs/JointState (names -> positions), clamped.

    Messages may carry a subset of channels (missing ones are neutral); unknown names or a
    length mismatch raise ``MessageError``.
    """
    names = list(msg.name)
    values = np.asarray(msg.position, dtype=np.float64)
    if len(names) != len(values):
        raise MessageError(f"JointState has {len(names)} names but {len(values)} positions")
    try:
        frame = ex.from_named(names, values)
    except KeyError as err:
        raise MessageError(f"JointState.name: {err.args[0]}") from None
    return ex.clamp(frame)


def fill_joint_state(msg: Any, frame: NDArray[np.floating]) -> Any:
    """Fill JointState name/position with the 55 named expression values (clamped)."""
    msg.name = list(ex.EXPRESSION_NAMES)
    msg.position = ex.clamp(frame).astype(np.float64)
    return msg


def pcm_from_msg(msg: Any) -> NDArray[np.int16]:
    """Samples of a std_msgs/Int16MultiArray as int16 (mono)."""
    data = np.asarray(msg.data)
    if data.size and not np.issubdtype(data.dtype, np.integer):
        raise MessageError(f"audio data must be integers (Int16MultiArray), got {data.dtype}")
    if data.size and (data.min() < -32768 or data.max() > 32767):
        raise MessageError(f"audio samples outside int16 range: min {data.min()}, max {data.max()}")
    return data.astype(np.int16, copy=True).reshape(-1)


# Stamped PCM: the ROS 2 core message packages have no stamped audio type (audio_common_msgs
# is not among this package's dependencies), so a chunk of mono 16-bit PCM travels as a
# sensor_msgs/Image one pixel high: one 16SC1 pixel per sample, in order, little-endian, and
# header.stamp = the time just after the chunk's last sample (when the chunk was complete).
STAMPED_PCM_ENCODING = "16SC1"


def fill_stamped_pcm(msg: Any, samples: NDArray[np.integer], end_ns: int, frame_id: str = "microphone") -> Any:
    """Fill an Image message as a stamped PCM chunk ending at ``end_ns`` (see STAMPED_PCM_ENCODING)."""
    pcm = np.asarray(samples)
    if pcm.ndim != 1 or (pcm.size and not np.issubdtype(pcm.dtype, np.integer)):
        raise MessageError(f"stamped PCM needs a 1-d integer array, got {pcm.dtype} of shape {pcm.shape}")
    pcm = pcm.astype("<i2")
    fill_stamp(msg.header.stamp, end_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = 1, int(pcm.size)
    msg.encoding = STAMPED_PCM_ENCODING
    msg.is_bigendian = 0
    msg.step = 2 * int(pcm.size)
    _set_bytes(msg, pcm.view(np.uint8))
    return msg


def pcm_from_stamped(msg: Any) -> tuple[NDArray[np.int16], int]:
    """(samples as int16, end time in ns) of a stamped PCM chunk (see STAMPED_PCM_ENCODING)."""
    encoding = str(msg.encoding)
    if encoding != STAMPED_PCM_ENCODING or int(msg.height) != 1:
        raise MessageError(f"stamped PCM must be a {STAMPED_PCM_ENCODING} Image of height 1, "
                           f"got encoding {encoding!r}, height {int(msg.height)}")
    width = int(msg.width)
    raw = bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data.tobytes()
    if len(raw) < 2 * width:
        raise MessageError(f"stamped PCM holds {len(raw)} bytes, but width {width} needs {2 * width}")
    order = ">" if getattr(msg, "is_bigendian", 0) else "<"
    samples = np.frombuffer(raw[: 2 * width], dtype=f"{order}i2").astype(np.int16)
    return samples, stamp_to_ns(msg.header.stamp)


def float_array(values: Sequence[float] | NDArray[np.floating]) -> NDArray[np.float32]:
    return np.ascontiguousarray(np.asarray(values, dtype=np.float32).reshape(-1))


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def fill_stamp(stamp: Any, t_ns: int) -> Any:
    stamp.sec, stamp.nanosec = divmod(int(t_ns), 1_000_000_000)
    return stamp
