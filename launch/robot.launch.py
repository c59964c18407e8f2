"""Launch the face_expr_ros node graph on a robot with a full ROS 2 install.

    ros2 launch face_expr_ros robot.launch.py [params:=/path/to/params.yaml]

Every node reads the same parameter file as `face-expr bringup --params FILE`.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# (executable, node name). Grows as nodes are built; see README "Status".
GRAPH: list[tuple[str, str]] = []


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("face_expr_ros"))
    params = LaunchConfiguration("params")
    actions = [
        DeclareLaunchArgument(
            "params", default_value=str(share / "config" / "default.yaml"),
            description="ROS 2 parameter file for every node",
        )
    ]
    if not GRAPH:
        actions.append(LogInfo(msg="face_expr_ros: no nodes are built in this version yet"))
    for executable, name in GRAPH:
        actions.append(
            Node(package="face_expr_ros", executable=executable, name=name, parameters=[params], output="screen")
        )
    return LaunchDescription(actions)
