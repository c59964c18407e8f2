"""Launch the face_expr_ros node graph on a robot with a full ROS 2 install.

    ros2 launch face_expr_ros robot.launch.py [params:=FILE] [live_inputs:=true]

Every node reads the same parameter file as `face-expr bringup --params FILE`. With
live_inputs:=true the webcam and microphone nodes are started too (for machines without
camera and audio drivers).
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "face_expr_ros"
# (executable, node name): the same graph as face_expr_ros.nodes.bringup.GRAPH.
GRAPH = [
    ("face_tracker_node", "face_tracker"),
    ("speech_node", "speech"),
    ("policy_node", "policy"),
    ("face_driver_node", "face_driver"),
    ("avatar_node", "avatar"),
]
LIVE_INPUTS = [("webcam_node", "webcam"), ("microphone_node", "microphone")]
DEFAULT_PARAMS = "config/default.yaml"


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    params = LaunchConfiguration("params")
    live = LaunchConfiguration("live_inputs")
    actions = [
        DeclareLaunchArgument("params", default_value=str(share / DEFAULT_PARAMS),
                              description="ROS 2 parameter file for every node"),
        DeclareLaunchArgument("live_inputs", default_value="false",
                              description="also start the webcam and microphone nodes"),
    ]
    for executable, name in GRAPH:
        actions.append(Node(package=PACKAGE, executable=executable, name=name,
                            parameters=[params],
                            output="screen"))
    for executable, name in LIVE_INPUTS:
        actions.append(Node(package=PACKAGE, executable=executable, name=name, parameters=[params],
                            output="screen", condition=IfCondition(live)))
    return LaunchDescription(actions)
