"""Replay a rosbag2 through the face_expr_ros node graph (simulation on recorded data).

    ros2 launch face_expr_ros replay.launch.py bag:=/path/to/bag [params:=FILE] [rate:=1.0] [record:=OUT]

The bag player publishes /clock and every node follows it (use_sim_time), as
`face-expr bringup --bag BAG` does with a parameter file that sets use_sim_time.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

from launch import LaunchDescription

PACKAGE = "face_expr_ros"
GRAPH = [
    ("face_tracker_node", "face_tracker"),
    ("speech_node", "speech"),
    ("policy_node", "policy"),
    ("face_driver_node", "face_driver"),
    ("avatar_node", "avatar"),
]
DEFAULT_PARAMS = "config/replay.yaml"


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory(PACKAGE))
    params = LaunchConfiguration("params")
    sim_time = {"use_sim_time": True}
    actions = [
        DeclareLaunchArgument("bag", description="rosbag2 folder to replay"),
        DeclareLaunchArgument("params", default_value=str(share / DEFAULT_PARAMS),
                              description="ROS 2 parameter file for every node"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback speed factor"),
        DeclareLaunchArgument("record", default_value="", description="record the outputs to this new bag"),
        Node(package=PACKAGE, executable="bag_player_node", name="bag_player", output="screen",
             parameters=[params, {"bag": LaunchConfiguration("bag"), "rate": LaunchConfiguration("rate"),
                                  "publish_clock": True}]),
        Node(package=PACKAGE, executable="bag_recorder_node", name="bag_recorder", output="screen",
             parameters=[params, sim_time, {"out": LaunchConfiguration("record")}],
             condition=IfCondition(PythonExpression(["'", LaunchConfiguration("record"), "' != ''"]))),
    ]
    for executable, name in GRAPH:
        actions.append(Node(package=PACKAGE, executable=executable, name=name,
                            parameters=[params, sim_time],
                            output="screen"))
    return LaunchDescription(actions)
