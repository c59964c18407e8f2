"""rosbag2 files (sqlite3 and mcap) written and read with ``rosbags``, without a ROS install.

The message types come from rosbags' built-in ROS 2 Kilted type store, so bags written here
play in ``ros2 bag play`` on a robot, and bags recorded there read back here. Messages are
built and read through ``face_expr_ros.messages``, the same field conversions the nodes use.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import messages

STORAGES = ("sqlite3", "mcap")

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
JOINT_STATE = "sensor_msgs/msg/JointState"
INT16_ARRAY = "std_msgs/msg/Int16MultiArray"
FLOAT32_ARRAY = "std_msgs/msg/Float32MultiArray"
FLOAT32 = "std_msgs/msg/Float32"
STRING = "std_msgs/msg/String"


class BagError(ValueError):
    """A bag that cannot be read or written as asked; the text names the file and the reason."""


@cache
def typestore() -> Any:
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _header(t_ns: int, frame_id: str) -> Any:
    types = typestore().types
    sec, nanosec = divmod(int(t_ns), 1_000_000_000)
    return types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                        frame_id=frame_id)


def _empty_layout() -> Any:
    return typestore().types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0)


def image_message(t_ns: int, image_bgr: NDArray[np.uint8], frame_id: str = "camera",
                  encoding: str = "bgr8") -> Any:
    msg = typestore().types[IMAGE](header=_header(t_ns, frame_id), height=0, width=0, encoding="",
                                   is_bigendian=0, step=0, data=np.zeros(0, np.uint8))
    return messages.fill_image(msg, image_bgr, encoding)


def compressed_image_message(t_ns: int, image_bgr: NDArray[np.uint8], frame_id: str = "camera",
                             quality: int = 90) -> Any:
    """A JPEG sensor_msgs/CompressedImage: 20-50x smaller than raw frames in a bag."""
    import cv2

    ok, jpeg = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise BagError(f"cannot JPEG-encode an image of shape {image_bgr.shape}")
    return typestore().types[COMPRESSED_IMAGE](header=_header(t_ns, frame_id), format="jpeg",
                                               data=jpeg.reshape(-1))


def joint_state_message(t_ns: int, frame: NDArray[np.floating], frame_id: str = "face") -> Any:
    msg = typestore().types[JOINT_STATE](header=_header(t_ns, frame_id), name=[], position=np.zeros(0),
                                         velocity=np.zeros(0), effort=np.zeros(0))
    return messages.fill_joint_state(msg, frame)


def pcm_message(samples: NDArray[np.int16]) -> Any:
    return typestore().types[INT16_ARRAY](layout=_empty_layout(), data=np.asarray(samples, dtype=np.int16))


def stamped_pcm_message(samples: NDArray[np.int16], end_ns: int, frame_id: str = "microphone") -> Any:
    """A stamped PCM chunk (``messages.STAMPED_PCM_ENCODING``) ending at ``end_ns``."""
    msg = typestore().types[IMAGE](header=_header(end_ns, frame_id), height=0, width=0, encoding="",
                                   is_bigendian=0, step=0, data=np.zeros(0, np.uint8))
    return messages.fill_stamped_pcm(msg, samples, end_ns, frame_id)


def float32_array_message(values: NDArray[np.floating]) -> Any:
    return typestore().types[FLOAT32_ARRAY](layout=_empty_layout(), data=messages.float_array(values))


def string_message(text: str) -> Any:
    return typestore().types[STRING](data=text)


def float32_message(value: float) -> Any:
    return typestore().types[FLOAT32](data=float(value))


class BagWriter:
    """Append messages to a new rosbag2 folder; connections are added on first use.

    >>> with BagWriter("out_bag", storage="mcap") as bag:
    ...     bag.write("/face_expr/transcript", string_message("hello"), t_ns=0)
    """

    def __init__(self, path: str | Path, storage: str = "sqlite3") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        if storage not in STORAGES:
            raise BagError(f"unknown bag storage {storage!r}; use one of {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} already exists; rosbag2 writes a new folder")
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(self.path, version=9, storage_plugin=plugin)
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> BagWriter:
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def write(self, topic: str, msg: Any, t_ns: int) -> None:
        msgtype = msg.__msgtype__
        self.write_raw(topic, msgtype, typestore().serialize_cdr(msg, msgtype), t_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes, t_ns: int) -> None:
        """Append an already CDR-serialised message (e.g. from rclpy's serialize_message)."""
        connection = self._connections.get(topic)
        if connection is None:
            connection = self._writer.add_connection(topic, msgtype, typestore=typestore())
            self._connections[topic] = connection
        elif connection.msgtype != msgtype:
            raise BagError(f"{self.path}: topic {topic} has type {connection.msgtype}, not {msgtype}")
        self._writer.write(connection, int(t_ns), data)


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    t_ns: int
    msg: Any


def bag_topics(path: str | Path) -> dict[str, str]:
    """Topic -> message type of a bag."""
    from rosbags.rosbag2 import Reader

    with _open_reader(Reader, path) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def read_bag(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[BagMessage]:
    """Messages of a rosbag2 folder (sqlite3 or mcap) in time order, deserialised.

    A message that does not deserialise raises ``BagError`` naming the topic and time.
    """
    from rosbags.rosbag2 import Reader

    wanted = set(topics) if topics is not None else None
    with _open_reader(Reader, path) as reader:
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if wanted:
            missing = wanted - {c.topic for c in reader.connections}
            if missing:
                have = ", ".join(sorted(c.topic for c in reader.connections))
                raise BagError(f"{path}: no topic(s) {sorted(missing)} in the bag; it has: {have}")
        for connection, t_ns, raw in reader.messages(connections=connections):
            try:
                msg = typestore().deserialize_cdr(raw, connection.msgtype)
            except Exception as err:  # noqa: BLE001 - rosbags raises several error types
                raise BagError(f"{path}: cannot decode {connection.topic} at t={t_ns} ns: {err}") from None
            yield BagMessage(connection.topic, connection.msgtype, t_ns, msg)


def read_bag_raw(path: str | Path, topics: Iterable[str] | None = None) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, msgtype, t_ns, CDR bytes) in time order, without deserialising (for replay)."""
    from rosbags.rosbag2 import Reader

    wanted = set(topics) if topics is not None else None
    with _open_reader(Reader, path) as reader:
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for connection, t_ns, raw in reader.messages(connections=connections):
            yield connection.topic, connection.msgtype, t_ns, bytes(raw)


@contextmanager
def _open_reader(reader_cls: Any, path: str | Path) -> Iterator[Any]:
    folder = Path(path)
    if not folder.exists():
        raise BagError(f"bag not found: {folder}")
    try:
        reader = reader_cls(folder)
        reader.open()
    except Exception as err:  # noqa: BLE001 - rosbags raises several error types
        raise BagError(f"{folder}: not a readable rosbag2 folder: {err}") from None
    try:
        yield reader
    finally:
        reader.close()
