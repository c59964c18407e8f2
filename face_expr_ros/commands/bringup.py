"""``face-expr bringup``: the node graph in one process."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from face_expr_ros.config import default_config_path

    parser = subparsers.add_parser(
        "bringup",
        help="run the node graph in one process (camera/bag -> tracker, speech -> policy -> face, avatar)",
        description="Start the face_expr_ros nodes in one process on a multi-threaded executor, with "
        "parameters from a ROS 2 parameter file (the same files the launch files use). With --bag, a "
        "rosbag2 is replayed into the graph (set use_sim_time in the file to follow its clock); with "
        "--live, the webcam and microphone nodes provide the inputs. Ctrl-C stops cleanly.",
    )
    parser.add_argument("--params", type=Path, default=default_config_path(),
                        help="ROS 2 parameter file (default: the package's config/default.yaml)")
    parser.add_argument("--bag", type=Path, help="rosbag2 folder to replay into the graph")
    parser.add_argument("--bag-topics", nargs="+", help="replay only these topics of the bag")
    parser.add_argument("--record", type=Path, help="record the graph's outputs to this new rosbag2 folder")
    parser.add_argument("--live", action="store_true", help="add the webcam and microphone nodes")
    parser.add_argument("--nodes", nargs="+", help="run only these nodes (default: the whole graph)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from face_expr_ros.nodes.bringup import GRAPH, LIVE_INPUTS, NODE_CLASSES, BringupOptions
    from face_expr_ros.nodes.bringup import run as bringup

    nodes = tuple(args.nodes or GRAPH) + (LIVE_INPUTS if args.live else ())
    unknown = [n for n in nodes if n not in NODE_CLASSES]
    if unknown:
        print(f"face-expr bringup: unknown node(s) {unknown}; known: {', '.join(NODE_CLASSES)}")
        return 2
    overrides = {"bag_player": {"topics": ",".join(args.bag_topics)}} if args.bag_topics else {}
    return bringup(BringupOptions(args.params, nodes, args.bag, args.record, overrides, args.duration))
