"""End-to-end latency and sustained rate of the node graph, one process per node.

    .venv/bin/python benchmarks/bench_graph_latency.py [--seconds 60]

A generated conversation is played from a bag (camera JPEG, audio, /clock) into the tracker,
speech, policy, face driver and avatar nodes for --seconds. A probe node measures, on the
bag's clock: camera stamp -> tracked speaker expression received, and camera stamp ->
listener expression received (using the newest tracked frame seen before it), the policy's
frames against the 30 Hz grid (missed deadlines), and /proc CPU time per node. Prints a table
and writes benchmarks/results/graph_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "graph_latency.json"
NODES = ("face_tracker", "speech", "policy", "face_driver", "avatar")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the played conversation")
    parser.add_argument("--seed", type=int, default=3, help="conversation seed")
    args = parser.parse_args()

    import rclpy
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import JointState

    from face_expr_ros import messages
    from face_expr_ros.config import package_share
    from face_expr_ros.nodes.base import STATE_QOS
    from face_expr_ros.sim.conversation import generate_conversation
    from face_expr_ros.sim.media import truncate, write_media

    tmp = Path(tempfile.mkdtemp(prefix="graph_latency_"))
    conv = generate_conversation(args.seed, with_audio=True)
    while conv.duration_s < args.seconds:
        args.seed += 1
        conv = generate_conversation(args.seed, with_audio=True)
    conv = truncate(conv, args.seconds)
    bag = write_media(conv, tmp / "media", storages=("mcap",), mux=False, progress=True).bags["mcap"]
    params = tmp / "params.yaml"
    params.write_text((package_share() / "config" / "replay.yaml").read_text()
                      .replace("reliable_images: true", "reliable_images: false")
                      .replace("input_delay_s: 0.2", "input_delay_s: 0.0")
                      .replace("text_delay_s: 1.5", "text_delay_s: 0.0")
                      + "avatar:\n  ros__parameters:\n    avatar: photo\n")
    domain = 30 + os.getpid() % 60
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    exe = Path(sys.executable).parent
    procs = {n: subprocess.Popen([str(exe / f"{n}_node"), "--ros-args", "--params-file", str(params)], env=env,
                                 stdout=(tmp / f"{n}.log").open("w"), stderr=subprocess.STDOUT) for n in NODES}

    rclpy.init(domain_id=domain)
    probe = rclpy.create_node("latency_probe", parameter_overrides=[Parameter("use_sim_time", value=True)])
    tracked: list[tuple[int, int]] = []  # (speaker stamp, arrival on the bag clock)
    listener: list[tuple[int, int, int]] = []  # (frame stamp, arrival, newest speaker stamp seen)

    def on_speaker(msg: JointState) -> None:
        tracked.append((messages.stamp_to_ns(msg.header.stamp), probe.get_clock().now().nanoseconds))

    def on_listener(msg: JointState) -> None:
        newest = tracked[-1][0] if tracked else -1
        listener.append((messages.stamp_to_ns(msg.header.stamp), probe.get_clock().now().nanoseconds, newest))

    probe.create_subscription(JointState, "/face_expr/speaker_expression", on_speaker, STATE_QOS)
    probe.create_subscription(JointState, "/face_expr/expression", on_listener, STATE_QOS)
    end = time.monotonic() + 12.0  # nodes load their models, DDS discovers
    while time.monotonic() < end:
        rclpy.spin_once(probe, timeout_sec=0.1)
    cpu0 = {n: cpu_seconds(p.pid) for n, p in procs.items()}
    player = subprocess.Popen([str(exe / "bag_player_node"), "--ros-args", "--params-file", str(params), "-p",
                               f"bag:={bag}", "-p", "publish_clock:=true", "-p", "exit_on_end:=true", "-p",
                               "start_delay_s:=2.0"], env=env, stdout=(tmp / "player.log").open("w"),
                              stderr=subprocess.STDOUT)
    wall0 = time.monotonic()
    while player.poll() is None:
        rclpy.spin_once(probe, timeout_sec=0.05)
    wall = time.monotonic() - wall0
    cpu = {n: 100.0 * (cpu_seconds(p.pid) - cpu0[n]) / wall for n, p in procs.items()}
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        rclpy.spin_once(probe, timeout_sec=0.05)
    for proc in procs.values():
        proc.send_signal(signal.SIGINT)
    for proc in procs.values():
        proc.wait(timeout=15)
    probe.destroy_node()
    rclpy.shutdown()

    n_frames = len(conv.speaker_track)
    cam_to_tracked = np.array([(a - s) / 1e6 for s, a in tracked if s >= 0])
    in_bag = [(s, a, n) for s, a, n in listener if 0 <= s < n_frames * 1e9 / 30 and n >= 0]
    cam_to_expr = np.array([(a - n) / 1e6 for _, a, n in in_bag])
    grid = {round(s / 1e9 * 30) for s, _, _ in listener}
    missed = sum(1 for k in range(n_frames) if k not in grid)
    late = sum(1 for s, a, _ in in_bag if a - s > 1e9 / 30)  # published after the next frame was due

    def pct(x: np.ndarray, q: float) -> float:
        return float(np.percentile(x, q)) if len(x) else float("nan")

    result = {
        "seconds": args.seconds, "camera_frames": n_frames, "tracked_frames": len(tracked),
        "listener_frames_in_bag": len(in_bag), "missed_frames": missed, "late_frames": late,
        "camera_to_tracked_ms": {"p50": pct(cam_to_tracked, 50), "p99": pct(cam_to_tracked, 99)},
        "camera_to_expression_ms": {"p50": pct(cam_to_expr, 50), "p99": pct(cam_to_expr, 99)},
        "cpu_percent_of_one_core": {n: round(v, 1) for n, v in cpu.items()},
        "machine": {"cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0]},
        "command": f"python benchmarks/bench_graph_latency.py --seconds {args.seconds:g}",
    }
    print(f"{args.seconds:g} s at 30 Hz: {n_frames} camera frames, {len(tracked)} tracked, "
          f"{len(in_bag)} listener frames, {missed} missed grid frames, {late} published late")
    print(f"camera -> tracked expression   p50 {result['camera_to_tracked_ms']['p50']:7.1f} ms   "
          f"p99 {result['camera_to_tracked_ms']['p99']:7.1f} ms")
    print(f"camera -> listener expression  p50 {result['camera_to_expression_ms']['p50']:7.1f} ms   "
          f"p99 {result['camera_to_expression_ms']['p99']:7.1f} ms")
    print("CPU (% of one core): " + ", ".join(f"{n} {v:.0f}" for n, v in result["cpu_percent_of_one_core"].items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
