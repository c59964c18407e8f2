"""Typed, validated settings for every node, read from ROS 2 parameter files.

The files under ``config/`` use the standard ROS 2 parameter-file layout, so that the
same file works with ``ros2 run --ros-args --params-file`` and with ``face-expr bringup``::

    face_tracker:
      ros__parameters:
        image_topic: /camera/image_raw

A node may also be addressed by a namespaced name (``/robot1/face_tracker``) or by the
wildcard ``/**``, whose parameters apply to every node.

Each node's parameters are one frozen dataclass below; ``param()`` attaches the help text
and the allowed range or choices. The schema is the single source of truth: nodes declare
their ROS parameters from it, the docs table is generated from it, and every mistake in a
file fails at start-up with a message that names the file, the key, the value and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

PARAMS_KEY = "ros__parameters"
WILDCARD = "/**"


class ConfigError(ValueError):
    """A parameter file or parameter value that cannot be used; the message says why."""


def param(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A settings field with its help text and the values it allows (bounds inclusive)."""
    return field(default=default, metadata={"help": help, "low": low, "high": high, "choices": choices})


@dataclass(frozen=True)
class NodeSettings:
    """Parameters every node has."""

    use_sim_time: bool = param(False, "Follow /clock (rosbag replay) instead of the wall clock.")
    diagnostics_period_s: float = param(
        1.0, "Period of the /diagnostics status of this node, in seconds.", low=0.1, high=60.0
    )
    realtime_priority: int = param(
        0, "SCHED_RR priority (1-99) of the node's process (a node executable; not in face-expr bringup), "
        "above every normal process; 0: the normal scheduler. Needs CAP_SYS_NICE (root, or an rtprio "
        "limit); refused: a warning, and it runs normally.",
        low=0, high=99,
    )
    nice: int = param(
        0, "CPU niceness of the node's process (a node executable) under the normal scheduler "
        "(-20..19; higher yields the cores to others). Below 0 needs CAP_SYS_NICE.", low=-20, high=19,
    )


# Scheduling of the nodes (docs/ros.md, "Latency"): the camera -> tracker -> policy -> face
# driver path runs at modest real-time priorities, the policy and the driver above the tracker
# so that a frame's step or an actuator command never waits for a 10 ms tracking job; the avatar
# (a display) yields the cores to everything else.
_PRIORITY_HELP = NodeSettings.__dataclass_fields__["realtime_priority"].metadata["help"]
_NICE_HELP = NodeSettings.__dataclass_fields__["nice"].metadata["help"]


def _priority(default: int) -> Any:
    return param(default, _PRIORITY_HELP, low=0, high=99)


def _nice(default: int) -> Any:
    return param(default, _NICE_HELP, low=-20, high=19)


@dataclass(frozen=True)
class FaceTrackerSettings(NodeSettings):
    realtime_priority: int = _priority(10)
    image_topic: str = param("/camera/image_raw", "Camera images in (sensor_msgs/Image).")
    compressed: bool = param(False, "Subscribe to <image_topic>/compressed (CompressedImage) instead.")
    reliable_images: bool = param(
        False, "Reliable, queued image subscription (replays: never drop a frame) instead of best effort, "
        "latest only (live cameras: never fall behind)."
    )
    expression_topic: str = param(
        "/face_expr/speaker_expression", "Speaker expression out (JointState, 55 named values)."
    )
    min_detection_confidence: float = param(0.5, "MediaPipe face detection threshold.", low=0.0, high=1.0)
    min_tracking_confidence: float = param(
        0.5, "MediaPipe landmark tracking threshold (MediaPipe reads it only between detections; this tracker "
        "detects on every frame).", low=0.0, high=1.0
    )
    neutral_window_s: float = param(
        20.0, "Length of history behind the running per-person neutral face.", low=1.0, high=3600.0
    )
    max_image_age_s: float = param(
        0.5, "Images older than this (stamp vs clock) are dropped and counted.", low=0.0, high=60.0
    )


@dataclass(frozen=True)
class SpeechSettings(NodeSettings):
    audio_topic: str = param("/audio/pcm", "Microphone PCM in (std_msgs/Int16MultiArray, mono).")
    stamped_audio: bool = param(
        False, "Subscribe to <audio_topic>/stamped (stamped PCM: a 16SC1 Image one pixel high, stamped at the "
        "chunk's end, from the microphone node and the bag player) and date the audio by those stamps; false "
        "dates unstamped Int16MultiArray PCM by its arrival."
    )
    sample_rate: int = param(16000, "Sample rate of the incoming PCM, in Hz.", low=8000, high=96000)
    asr_backend: str = param(
        "pocketsphinx", "Speech recogniser.", choices=("pocketsphinx", "vosk", "none")
    )
    vosk_model_dir: str = param("", "Vosk model directory (required when asr_backend is vosk).")
    transcript_topic: str = param("/face_expr/transcript", "Recognised words out (std_msgs/String).")
    words_topic: str = param(
        "/face_expr/words", "Recognised words out (JointState: name=word, position=its end time, stamp=where in "
        "the audio the recogniser delivered them; one message per audio chunk, empty when no word came)."
    )
    features_topic: str = param(
        "/face_expr/audio_features", "Audio features out per 30 Hz frame (JointState, stamped, named values)."
    )


@dataclass(frozen=True)
class PolicySettings(NodeSettings):
    realtime_priority: int = _priority(12)
    rate_hz: float = param(30.0, "Control rate: one expression published per tick.", low=1.0, high=120.0)
    backend: str = param(
        "onnxruntime", "Inference runtime.", choices=("onnxruntime", "torch", "tensorrt")
    )
    model_dir: str = param("", "Policy directory; empty means the model shipped in the package.")
    temperature: float = param(1.0, "Sampling temperature of the chunk code (what the face does); 0 is greedy.",
                               low=0.0, high=5.0)
    token_temperature: float = param(0.7, "Sampling temperature of the tokens given the code (how exactly).",
                                     low=0.0, high=5.0)
    eyelid_temperature: float = param(
        1.15, "Sampling temperature of the eyelid tokens (blinks are rare events: cooler, the face stops blinking).",
        low=0.0, high=5.0)
    gaze_temperature: float = param(
        1.0, "Sampling temperature of the gaze tokens (glances away are rare events: cooler, the eyes stare).",
        low=0.0, high=5.0)
    head_temperature: float = param(
        0.0, "Sampling temperature of the head tokens given the code; 0: the code alone decides when to nod "
        "(random head tokens add pitch bumps that read as mistimed nods).", low=0.0, high=5.0)
    code_persistence: float = param(
        3.0, "Logit bonus for the previous plan's code: a behaviour in flight (a nod) goes on; 0 turns it off.",
        low=0.0, high=20.0)
    level_noise_tau_s: float = param(
        1.0, "Correlation time (s) of the quantiles at which channel levels are drawn: levels wander "
        "instead of jumping at every plan; 0 draws afresh.", low=0.0, high=60.0)
    top_p: float = param(1.0, "Nucleus sampling mass.", low=0.01, high=1.0)
    replan_every: int = param(4, "Frames between plans (1..chunk length).", low=1, high=64)
    smoothing_s: float = param(0.1, "Output low-pass time constant (s), eyelids excepted; 0 turns it off.",
                               low=0.0, high=2.0)
    seed: int = param(-1, "Sampling seed; -1 draws one at start-up.", low=-1, high=2**31 - 1)
    persona: str = param(
        "sample", "Who the listener is: 'sample' draws one of the training listeners with the seed, 'mean' is the "
        "average listener, a number N is training listener N (docs/policy.md, 'Persona').")
    persona_spread: float = param(
        0.75, "How far a drawn persona sits from the average listener: 1 as recorded, 0 the average "
        "(docs/policy.md, 'Persona spread').", low=0.0, high=2.0)
    output_calibration: bool = param(
        True, "Apply the policy directory's output calibration (if it has one), which gives the published frames "
        "the recorded listeners' spread; false publishes the network's raw frames (docs/policy.md, 'Output "
        "calibration').")
    speaker_topic: str = param("/face_expr/speaker_expression", "Speaker expression in.")
    words_topic: str = param("/face_expr/words", "Recognised words with times in.")
    features_topic: str = param("/face_expr/audio_features", "Audio features in.")
    input_delay_s: float = param(
        0.0, "Use speaker and audio inputs stamped at least this long before each frame (0 reacts fastest).",
        low=0.0, high=2.0
    )
    text_delay_s: float = param(
        0.0, "Use recognised words this long after the point in the audio where the recogniser delivered "
        "them (0 uses them as soon as they are recognised).", low=0.0, high=10.0
    )
    wait_for_inputs: bool = param(
        False, "Step each frame only once every input stream that has a publisher has delivered all it "
        "stamped up to the frame's input time (exactly repeatable replays); false steps each frame as soon "
        "as the speaker's tracked camera frame for it arrives (lowest latency, live)."
    )
    max_wait_s: float = param(
        0.025, "Longest a frame waits, after its time on the grid, for the inputs above before it is stepped "
        "without them (the speaker's tracked frame live; every stream with wait_for_inputs).", low=0.0, high=60.0
    )
    expression_topic: str = param("/face_expr/expression", "Listener expression out (JointState).")
    input_timeout_s: float = param(
        0.5, "An input older than this counts as missing (idle behaviour).", low=0.05, high=60.0
    )


@dataclass(frozen=True)
class FaceDriverSettings(NodeSettings):
    realtime_priority: int = _priority(14)
    expression_topic: str = param("/face_expr/expression", "Listener expression in.")
    robot_face: str = param(
        "robot_faces/generic_servo_face.yaml",
        "Actuator map (YAML); relative paths are looked up in the package's config folder.",
    )
    command_topic: str = param("/face_controller/commands", "ros2_control commands out.")
    command_type: str = param(
        "float64_multi_array",
        "Message type of the commands.",
        choices=("float64_multi_array", "joint_trajectory"),
    )
    rate_hz: float = param(50.0, "Command rate.", low=1.0, high=1000.0)


@dataclass(frozen=True)
class AvatarSettings(NodeSettings):
    nice: int = _nice(10)
    expression_topic: str = param("/face_expr/expression", "Expression to render.")
    image_topic: str = param("/face_expr/avatar/image", "Rendered avatar out (sensor_msgs/Image).")
    avatar: str = param("photo", "Avatar kind.", choices=("photo", "mesh"))
    photo: str = param("", "Face photo for the photo avatar; empty means the built-in one.")
    size: int = param(512, "Rendered image width and height in pixels.", low=64, high=2048)
    rate_hz: float = param(30.0, "Render rate.", low=1.0, high=120.0)
    show_window: bool = param(False, "Also show the avatar in an OpenCV window.")


@dataclass(frozen=True)
class LearnerSettings(NodeSettings):
    feedback_topic: str = param("/face_expr/feedback", "Operator ratings in (Float32 in [-1, 1]).")
    store_dir: str = param("~/.face_expr/experience", "Experience store directory.")
    credit_delay_s: float = param(
        0.5, "Ratings refer to behaviour at least this long before they arrive.", low=0.0, high=30.0
    )
    credit_window_s: float = param(
        3.0, "Length of the segment a rating is credited to.", low=0.1, high=120.0
    )


@dataclass(frozen=True)
class WebcamSettings(NodeSettings):
    realtime_priority: int = _priority(10)
    device: int = param(0, "OpenCV camera index.", low=0, high=63)
    width: int = param(640, "Requested image width.", low=32, high=7680)
    height: int = param(480, "Requested image height.", low=32, high=4320)
    fps: float = param(30.0, "Requested frame rate.", low=1.0, high=240.0)
    image_topic: str = param("/camera/image_raw", "Images out.")
    frame_id: str = param("camera", "frame_id in the image headers.")


@dataclass(frozen=True)
class MicrophoneSettings(NodeSettings):
    device: str = param("", "sounddevice input device name or index; empty is the system default.")
    sample_rate: int = param(16000, "Capture rate in Hz.", low=8000, high=96000)
    chunk_ms: float = param(32.0, "Samples per message, in milliseconds.", low=5.0, high=1000.0)
    audio_topic: str = param(
        "/audio/pcm", "PCM out (std_msgs/Int16MultiArray), and stamped PCM on <audio_topic>/stamped."
    )


@dataclass(frozen=True)
class BagPlayerSettings(NodeSettings):
    bag: str = param("", "rosbag2 folder to play (sqlite3 or mcap).")
    rate: float = param(1.0, "Playback speed factor (2.0 plays twice as fast).", low=0.01, high=100.0)
    publish_clock: bool = param(False, "Publish /clock from the bag's time (for use_sim_time).")
    stamp_audio: bool = param(
        True, "Also publish each unstamped PCM topic (Int16MultiArray) as stamped PCM on <topic>/stamped, "
        "stamped with the chunk's record time (for the speech node's stamped_audio)."
    )
    topics: str = param("", "Comma-separated topics to play; empty plays all.")
    remap: str = param("", "Comma-separated from:=to topic renames, e.g. /cam:=/camera/image_raw.")
    start_delay_s: float = param(1.0, "Wait before the first message, for subscribers to connect.",
                                 low=0.0, high=60.0)
    subscriber_wait_s: float = param(
        0.0, "After start_delay_s, hold (at most this long) until discovery has settled: some played topic has a "
        "subscriber and no count changed for 0.5 s. 0: no wait. Replays set it: on a busy machine discovery can "
        "outlast start_delay_s, and a message published before its subscriber is matched is lost.",
        low=0.0, high=120.0
    )
    max_lag_s: float = param(
        0.0, "Hold the bag and its clock while the newest stamp on any of pace_topics is more than this behind "
        "the bag (0: never; replays through a graph slower than real time).", low=0.0, high=60.0
    )
    pace_topics: str = param(
        "/face_expr/speaker_expression,/face_expr/words",
        "Comma-separated stamped JointState topics that max_lag_s watches (ones that have published).",
    )
    loop: bool = param(False, "Start again at the end.")
    exit_on_end: bool = param(False, "Stop the node (and its process) when the bag has been played.")


@dataclass(frozen=True)
class BagRecorderSettings(NodeSettings):
    out: str = param("", "rosbag2 folder to create.")
    storage: str = param("mcap", "Storage format.", choices=("sqlite3", "mcap"))
    topics: str = param(
        "/face_expr/expression,/face_expr/speaker_expression,/face_expr/transcript,/face_controller/commands",
        "Comma-separated topics to record (their types are discovered from the graph).",
    )


NODE_SCHEMAS: dict[str, type[NodeSettings]] = {
    "face_tracker": FaceTrackerSettings,
    "speech": SpeechSettings,
    "policy": PolicySettings,
    "face_driver": FaceDriverSettings,
    "avatar": AvatarSettings,
    "learner": LearnerSettings,
    "webcam": WebcamSettings,
    "microphone": MicrophoneSettings,
    "bag_player": BagPlayerSettings,
    "bag_recorder": BagRecorderSettings,
}

S = TypeVar("S", bound=NodeSettings)


def settings_from_mapping(schema: type[S], values: Mapping[str, Any], source: str) -> S:
    """Validate ``values`` against ``schema``; ``source`` names where they came from in errors.

    Missing keys keep their defaults. Unknown keys, wrong types, values out of range or
    not among the choices raise ConfigError.
    """
    fields = {f.name: f for f in dataclasses.fields(schema)}
    hints = get_type_hints(schema)
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            close = difflib.get_close_matches(key, fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"{source}: unknown parameter {key!r}{hint} Allowed: {', '.join(sorted(fields))}"
            )
        checked[key] = _check_value(key, value, hints[key], fields[key].metadata, source)
    return schema(**checked)


def load_node_settings(path: str | os.PathLike[str], node: str, schema: type[S] | None = None) -> S:
    """Settings of ``node`` from a parameter file (wildcard entries first, then the node's own)."""
    if schema is None:
        if node not in NODE_SCHEMAS:
            raise ConfigError(_unknown_node_message(str(path), node))
        schema = NODE_SCHEMAS[node]  # type: ignore[assignment]
    sections = read_parameter_file(path)
    merged: dict[str, Any] = {}
    for name in (WILDCARD, node):
        merged.update(sections.get(name, {}))
    return settings_from_mapping(schema, merged, f"{path}: {node}")  # type: ignore[arg-type]


def load_all_settings(path: str | os.PathLike[str]) -> dict[str, NodeSettings]:
    """Settings of every known node, validated; sections for unknown nodes are an error."""
    sections = read_parameter_file(path)
    for name in sections:
        if name != WILDCARD and name not in NODE_SCHEMAS:
            raise ConfigError(_unknown_node_message(str(path), name))
    return {node: load_node_settings(path, node) for node in NODE_SCHEMAS}


def read_parameter_file(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Node name -> raw parameter mapping, with the file's structure checked.

    Namespaced node names (``/ns/face_tracker``) are reduced to the node's base name.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"parameter file not found: {file}")
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not a text file (UTF-8 expected)") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise ConfigError(
            f"{file}: expected a mapping of node names at the top level, got {type(document).__name__}"
        )
    sections: dict[str, dict[str, Any]] = {}
    for raw_name, body in document.items():
        name = str(raw_name)
        if not isinstance(body, dict) or PARAMS_KEY not in body:
            raise ConfigError(
                f"{file}: node {name!r} must contain a {PARAMS_KEY!r} mapping "
                f"(ROS 2 parameter-file format: <node>: {{{PARAMS_KEY}: {{key: value}}}})"
            )
        extra = [k for k in body if k != PARAMS_KEY]
        if extra:
            raise ConfigError(f"{file}: node {name!r} has keys besides {PARAMS_KEY!r}: {extra}")
        params = body[PARAMS_KEY] or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{file}: {name}.{PARAMS_KEY} must be a mapping of parameter names")
        base = name if name == WILDCARD else name.rstrip("/").rsplit("/", 1)[-1]
        sections.setdefault(base, {}).update(params)
    return sections


def describe_schema(schema: type[NodeSettings]) -> list[tuple[str, str, str, str, str]]:
    """(name, type, default, allowed, help) rows, for docs and ``--help`` text."""
    hints = get_type_hints(schema)
    rows = []
    for f in dataclasses.fields(schema):
        meta = f.metadata
        if meta.get("choices"):
            allowed = " | ".join(meta["choices"])
        elif meta.get("low") is not None or meta.get("high") is not None:
            allowed = f"[{meta.get('low')}, {meta.get('high')}]"
        else:
            allowed = "any"
        rows.append((f.name, hints[f.name].__name__, repr(f.default), allowed, meta.get("help", "")))
    return rows


def _check_value(key: str, value: Any, kind: type, meta: Mapping[str, Any], source: str) -> Any:
    where = f"{source}: parameter {key!r}"
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
    low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of: {', '.join(choices)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(f"{where}: {value!r} is out of range; allowed [{low}, {high}]")
    return value


def _unknown_node_message(path: str, node: str) -> str:
    close = difflib.get_close_matches(node, NODE_SCHEMAS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{path}: unknown node {node!r}{hint} Known nodes: {', '.join(NODE_SCHEMAS)}"


def package_share() -> Path:
    """The folder holding config/, models/, engines/: the source tree or the install's share dir."""
    source_root = Path(__file__).resolve().parent.parent
    if (source_root / "config").is_dir():
        return source_root
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("face_expr_ros"))
    except Exception:  # noqa: BLE001 - any failure means "not installed with colcon"
        return source_root


def default_config_path() -> Path:
    return package_share() / "config" / "default.yaml"
