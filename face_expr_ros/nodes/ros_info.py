"""Facts about the ROS 2 client libraries this process can use (for ``face-expr doctor``)."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class RosInfo:
    source: str
    rmw: str
    error: str = ""


def describe_ros() -> RosInfo:
    """Where rclpy comes from (a sourced distro or the pip wheels) and its RMW implementation."""
    try:
        import rclpy
        from rclpy.utilities import get_rmw_implementation_identifier
    except Exception as err:  # noqa: BLE001 - a broken install fails in many ways
        return RosInfo("", "", f"rclpy does not import: {err}")
    distro = os.environ.get("ROS_DISTRO")
    source = f"ROS 2 {distro} (sourced)" if distro else f"ROS 2 wheels ({os.path.dirname(rclpy.__file__)})"
    try:
        rmw = get_rmw_implementation_identifier()
    except Exception as err:  # noqa: BLE001
        return RosInfo(source, "", f"rclpy imports but has no RMW implementation: {err}")
    return RosInfo(source, rmw)
