"""Conversions between numpy arrays and ROS message fields, without rclpy or cv_bridge.

The functions read and fill message *fields* (``height``, ``encoding``, ``data``, ...), so
they work on rclpy message classes and on the ``rosbags`` dataclasses alike: nodes and bag
tools share one implementation. Bad messages raise ``MessageError`` naming the offending
field and value.
"""

from __future__ import annotations

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
    msg.data = np.ascontiguousarray(pixels).reshape(-1)
    return msg


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


def float_array(values: Sequence[float] | NDArray[np.floating]) -> NDArray[np.float32]:
    return np.ascontiguousarray(np.asarray(values, dtype=np.float32).reshape(-1))


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def fill_stamp(stamp: Any, t_ns: int) -> Any:
    stamp.sec, stamp.nanosec = divmod(int(t_ns), 1_000_000_000)
    return stamp
