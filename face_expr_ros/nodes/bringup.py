"""All nodes in one process (``face-expr bringup``): the same nodes and parameter files as the
launch files, for machines with only the pip-installed ROS 2 client libraries."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rclpy.executors import Executor
from rclpy.node import Node

from face_expr_ros import config

if TYPE_CHECKING:
    from face_expr_ros.nodes.policy import PolicyNode

# Node name -> module under face_expr_ros.nodes with a <Name>Node class.
NODE_CLASSES: dict[str, tuple[str, str]] = {
    "face_tracker": ("face_tracker", "FaceTrackerNode"),
    "speech": ("speech", "SpeechNode"),
    "policy": ("policy", "PolicyNode"),
    "face_driver": ("face_driver", "FaceDriverNode"),
    "avatar": ("avatar", "AvatarNode"),
    "webcam": ("webcam", "WebcamNode"),
    "microphone": ("microphone", "MicrophoneNode"),
    "bag_player": ("bag_player", "BagPlayerNode"),
    "bag_recorder": ("bag_recorder", "BagRecorderNode"),
}
GRAPH = ("face_tracker", "speech", "policy", "face_driver", "avatar")
LIVE_INPUTS = ("webcam", "microphone")


@dataclass
class BringupOptions:
    params: Path
    nodes: tuple[str, ...] = GRAPH
    bag: Path | None = None
    record: Path | None = None
    overrides: dict[str, dict[str, object]] = field(default_factory=dict)
    duration_s: float | None = None


def node_factory(name: str, params: Path, extra: dict[str, object]) -> Callable[[], Node]:
    """A constructor for node ``name`` with its parameters from the file, then ``extra``."""
    import importlib

    from rclpy.parameter import Parameter

    from face_expr_ros.nodes.base import overrides_from_file

    module, cls = NODE_CLASSES[name]
    node_cls = getattr(importlib.import_module(f"face_expr_ros.nodes.{module}"), cls)
    overrides = overrides_from_file(str(params), name) + [Parameter(k, value=v) for k, v in extra.items()]
    return lambda: node_cls(parameter_overrides=overrides)


def drain(executor: Executor, policy: PolicyNode | None, quiet_s: float = 1.0, max_s: float = 30.0) -> None:
    """After the bag: spin until the graph has worked through what it queued (the policy has had
    no input for ``quiet_s``; a replay that waits for its inputs may lag the bag), then a little
    longer for the last outputs to reach the recorder."""
    end = time.monotonic() + max_s
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
        if policy is None or policy.idle_for_s() > quiet_s:
            break
    end = time.monotonic() + (0.5 if policy is not None else quiet_s)
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)


def run(options: BringupOptions, on_ready: Callable[[dict[str, Node]], None] | None = None) -> int:
    """Start the nodes, spin them on a multi-threaded executor until Ctrl-C, the duration,
    or the end of the bag; returns a process exit code."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    config.load_all_settings(options.params)  # every section checked before anything starts
    names = list(options.nodes)
    extras = {n: dict(options.overrides.get(n, {})) for n in NODE_CLASSES}
    if options.bag is not None:
        names.append("bag_player")
        extras["bag_player"]["bag"] = str(options.bag)
        sim_time = config.load_node_settings(options.params, "bag_player").use_sim_time
        extras["bag_player"].setdefault("publish_clock", sim_time)
    if options.record is not None:
        names.append("bag_recorder")
        extras["bag_recorder"]["out"] = str(options.record)
    rclpy.init()
    nodes: dict[str, Node] = {}
    executor = MultiThreadedExecutor(num_threads=max(2, os.cpu_count() or 2))
    try:
        for name in names:
            nodes[name] = node_factory(name, options.params, extras[name])()
            executor.add_node(nodes[name])
        if on_ready is not None:
            on_ready(nodes)
        deadline = None if options.duration_s is None else time.monotonic() + options.duration_s
        player = nodes.get("bag_player")
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.1)
            if deadline is not None and time.monotonic() > deadline:
                break
            if player is not None and player.finished.is_set():
                drain(executor, nodes.get("policy"))
                break
    except config.ConfigError as err:
        print(f"[face_expr_ros] configuration error: {err}")
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        for node in reversed(list(nodes.values())):
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
