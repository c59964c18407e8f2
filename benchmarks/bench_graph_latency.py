"""End-to-end latency and sustained rate of the node graph, one process per node.

    .venv/bin/python benchmarks/bench_graph_latency.py [--seconds 60] [--runs 3]

A generated conversation is played from a bag (camera JPEG at 30 Hz, audio, /clock) into the
tracker, speech, policy, face driver and avatar nodes for --seconds, with the shipped parameters
(--params, config/default.yaml: live settings, i.e. best-effort camera and the policy stepping
on tracked frames, and the nodes' CPU scheduling: real-time priority for the tracker, policy and
face driver, nice 10 for the avatar) plus what a replay needs (use_sim_time: only the clock is
the bag's; compressed images; a fixed seed); --set NODE.KEY=VALUE changes any of them (e.g.
--set face_tracker.realtime_priority=0). A probe node measures, on the bag's clock:
camera stamp -> tracked speaker expression received, and camera stamp -> listener expression
received (using the newest tracked frame seen before it), the policy's frames against the
30 Hz grid (missed: never published; late: published after the next frame was due), and CPU
time per node (and of the player and the probe, which share the cores). Arrival times are the
latest /clock value extrapolated by the monotonic clock since it arrived (/clock comes every
10 ms; the plain sim-time clock would read up to 10 ms low). With --runs N the graph is run N
times on the same bag and the medians are reported. Prints a table and writes
benchmarks/results/graph_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "graph_latency.json"
NODES = ("face_tracker", "speech", "policy", "face_driver", "avatar")
DEFAULT_PARAMS = Path(__file__).resolve().parent.parent / "config" / "default.yaml"
# What a replay of the benchmark's bag needs on top of the parameter file.
REPLAY = {"/**": {"use_sim_time": True}, "face_tracker": {"compressed": True, "max_image_age_s": 2.0},
          "policy": {"seed": 0}, "avatar": {"avatar": "photo"}}


def write_params(source: Path, sets: list[str], out: Path, bag: Path) -> None:
    """``source`` with the replay settings and ``--set NODE.KEY=VALUE`` overrides, as a ROS 2 parameter file."""
    import yaml

    from face_expr_ros import config

    sections = config.read_parameter_file(source)
    player = {"bag": str(bag), "publish_clock": True, "exit_on_end": True, "start_delay_s": 2.0}
    for node, values in {**REPLAY, "bag_player": player}.items():
        sections.setdefault(node, {}).update(values)
    for item in sets:
        key, _, value = item.partition("=")
        node, _, name = key.rpartition(".")
        if not node or not name or not _:
            raise SystemExit(f"--set {item!r}: expected NODE.KEY=VALUE")
        sections.setdefault(node, {})[name] = yaml.safe_load(value)
    out.write_text(yaml.safe_dump({node: {"ros__parameters": values} for node, values in sections.items()}))
    for node in NODES:
        config.load_node_settings(out, node)  # a bad --set fails here, not in a node


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children (the speech node's recogniser process)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


def run_graph(params: Path, tmp: Path, n_frames: int, run: int) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState

    from face_expr_ros import messages
    from face_expr_ros.nodes.base import CLOCK_QOS, STATE_QOS, STREAM_QOS

    domain = 30 + (os.getpid() + run) % 60
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    exe = Path(sys.executable).parent
    procs = {n: subprocess.Popen([str(exe / f"{n}_node"), "--ros-args", "--params-file",
                                  str(params)], env=env, stdout=(tmp / f"{n}_{run}.log").open("w"),
                                 stderr=subprocess.STDOUT) for n in NODES}

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    probe = rclpy.create_node("latency_probe", context=context)  # times come from its own /clock subscription
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(probe)
    clock: list[int] = [0, 0]  # latest /clock value (ns), monotonic_ns when it arrived
    tracked: list[tuple[int, int]] = []  # (speaker stamp, arrival)
    listener: list[tuple[int, int, int, int, int]] = []  # (stamp, arrival, newest speaker stamp, its arrival, sim)
    diagnostics: dict[str, dict[str, str]] = {}

    def bag_now() -> int:
        return clock[0] + (time.monotonic_ns() - clock[1]) if clock[1] else 0

    def on_clock(msg: Clock) -> None:
        clock[:] = [messages.stamp_to_ns(msg.clock), time.monotonic_ns()]

    def on_speaker(msg: JointState) -> None:
        if msg.name:  # an empty message is the tracker's "no face in this frame"
            tracked.append((messages.stamp_to_ns(msg.header.stamp), bag_now()))

    def on_listener(msg: JointState) -> None:
        newest, seen = (tracked[-1][0], tracked[-1][1]) if tracked else (-1, -1)
        listener.append((messages.stamp_to_ns(msg.header.stamp), bag_now(), newest, seen, clock[0]))

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            diagnostics[status.name.split(": ", 1)[-1]] = {kv.key: kv.value for kv in status.values}

    probe.create_subscription(Clock, "/clock", on_clock, CLOCK_QOS)
    probe.create_subscription(JointState, "/face_expr/speaker_expression", on_speaker, STREAM_QOS)
    probe.create_subscription(JointState, "/face_expr/expression", on_listener, STREAM_QOS)
    probe.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, STATE_QOS)
    end = time.monotonic() + 12.0  # nodes load their models, DDS discovers
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    cpu0 = {n: cpu_seconds(p.pid) for n, p in procs.items()}
    self0, children0 = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    player = subprocess.Popen([str(exe / "bag_player_node"), "--ros-args", "--params-file", str(params)], env=env,
                              stdout=(tmp / f"player_{run}.log").open("w"), stderr=subprocess.STDOUT)
    wall0 = time.monotonic()
    while player.poll() is None:
        executor.spin_once(timeout_sec=0.05)
    wall = time.monotonic() - wall0
    cpu = {n: 100.0 * (cpu_seconds(p.pid) - cpu0[n]) / wall for n, p in procs.items()}
    # The measurement's own load on the same cores: the bag player (reaped above) and this probe.
    self1, children1 = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    for name, (a, b) in {"bag_player": (children0, children1), "probe": (self0, self1)}.items():
        cpu[name] = 100.0 * (b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime) / wall
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    for proc in procs.values():
        proc.send_signal(signal.SIGINT)
    hung = []
    for name, proc in procs.items():
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            # Seen once in ~15 runs: Fast DDS busy-waits in delete_participant for a discovery
            # callback (eProsima/Fast-DDS#6513) while every node shuts down at once.
            proc.kill()
            proc.wait()
            hung.append(name)
    executor.shutdown()
    probe.destroy_node()
    context.try_shutdown()

    cam_to_tracked = np.array([(a - s) / 1e6 for s, a in tracked if s >= 0])
    in_bag = [row for row in listener if 0 <= row[0] < n_frames * 1e9 / 30 and row[2] >= 0]
    cam_to_expr = np.array([(a - n) / 1e6 for _, a, n, _, _ in in_bag])
    cam_to_expr_sim = np.array([(sim - n) / 1e6 for _, _, n, _, sim in in_bag])
    tracked_to_expr = np.array([(a - seen) / 1e6 for _, a, _, seen, _ in in_bag])
    grid = {round(s / 1e9 * 30) for s, *_ in listener}
    policy = diagnostics.get("policy", {})
    tracker = diagnostics.get("face_tracker", {})
    return {
        "camera_frames": n_frames, "tracked_frames": len(tracked), "listener_frames_in_bag": len(in_bag),
        "missed_frames": sum(1 for k in range(n_frames) if k not in grid),
        "late_frames": sum(1 for s, a, *_ in in_bag if a - s > 1e9 / 30),  # published after the next frame was due
        "camera_to_tracked_ms": {"p50": pct(cam_to_tracked, 50), "p99": pct(cam_to_tracked, 99)},
        "tracked_to_expression_ms": {"p50": pct(tracked_to_expr, 50), "p99": pct(tracked_to_expr, 99)},
        "camera_to_expression_ms": {"p50": pct(cam_to_expr, 50), "p99": pct(cam_to_expr, 99)},
        "camera_to_expression_ms_on_plain_sim_clock": {"p50": pct(cam_to_expr_sim, 50),
                                                        "p99": pct(cam_to_expr_sim, 99)},
        "policy": {k: policy.get(k) for k in ("steps_on_input", "steps_on_deadline", "wait_ms_p50", "wait_ms_p99",
                                              "step_ms_p50", "step_ms_p99")},
        "tracker": {k: tracker.get(k) for k in ("track_ms_p50", "track_ms_p99", "frames", "faces")},
        "cpu_percent_of_one_core": {n: round(v, 1) for n, v in cpu.items()},
        "load_average_1min": os.getloadavg()[0],
        "killed_after_ctrl_c": hung,
    }


def median_of(runs: list[dict], *path: str) -> float:
    values = []
    for r in runs:
        for key in path:
            r = r[key]
        values.append(float(r))
    return float(np.median(values))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the played conversation")
    parser.add_argument("--seed", type=int, default=3, help="conversation seed")
    parser.add_argument("--runs", type=int, default=1, help="run the graph this many times; report medians")
    parser.add_argument("--params", type=Path, default=DEFAULT_PARAMS, help="parameter file of the nodes")
    parser.add_argument("--set", action="append", default=[], metavar="NODE.KEY=VALUE",
                        help="override a parameter (repeatable), e.g. avatar.rate_hz=15")
    parser.add_argument("--avatar-nice", type=int, help="the same as --set avatar.nice=N (older results)")
    parser.add_argument("--max-wait-s", type=float, help="the same as --set policy.max_wait_s=S (older results)")
    args = parser.parse_args()
    if args.avatar_nice is not None:
        args.set.append(f"avatar.nice={args.avatar_nice}")
    if args.max_wait_s is not None:
        args.set.append(f"policy.max_wait_s={args.max_wait_s}")

    from face_expr_ros.sim.conversation import generate_conversation
    from face_expr_ros.sim.media import truncate, write_media

    tmp = Path(tempfile.mkdtemp(prefix="graph_latency_"))
    conv = generate_conversation(args.seed, with_audio=True)
    while conv.duration_s < args.seconds:
        args.seed += 1
        conv = generate_conversation(args.seed, with_audio=True)
    conv = truncate(conv, args.seconds)
    bag = write_media(conv, tmp / "media", storages=("mcap",), mux=False, progress=False).bags["mcap"]
    params = tmp / "params.yaml"
    write_params(args.params, args.set, params, bag)
    n_frames = len(conv.speaker_track)

    load_before = os.getloadavg()[0]
    runs = []
    for run in range(args.runs):
        r = run_graph(params, tmp, n_frames, run)
        runs.append(r)
        print(f"run {run + 1}: camera -> expression p50 {r['camera_to_expression_ms']['p50']:.1f} ms, "
              f"p99 {r['camera_to_expression_ms']['p99']:.1f} ms; {r['missed_frames']} missed, "
              f"{r['late_frames']} late; load {r['load_average_1min']:.1f}", flush=True)

    def med(*path: str) -> float:
        return median_of(runs, *path)

    result = {
        "seconds": args.seconds, "runs": len(runs), "camera_frames": n_frames,
        "params": str(args.params.resolve().relative_to(DEFAULT_PARAMS.parent.parent)
                      if args.params.resolve().is_relative_to(DEFAULT_PARAMS.parent.parent) else args.params),
        "set": args.set,
        "median": {
            "tracked_frames": med("tracked_frames"), "listener_frames_in_bag": med("listener_frames_in_bag"),
            "missed_frames": med("missed_frames"), "late_frames": med("late_frames"),
            **{f"{m}_ms": {q: med(f"{m}_ms", q) for q in ("p50", "p99")}
               for m in ("camera_to_tracked", "tracked_to_expression", "camera_to_expression")},
            "cpu_percent_of_one_core": {n: med("cpu_percent_of_one_core", n)
                                        for n in (*NODES, "bag_player", "probe")},
        },
        "per_run": runs,
        "machine": {"cpus": os.cpu_count()},
        "load_average_1min_before": load_before,
        "command": f"python benchmarks/bench_graph_latency.py --seconds {args.seconds:g} --runs {args.runs}"
                   + ("" if args.params == DEFAULT_PARAMS else f" --params {args.params}")
                   + "".join(f" --set {item}" for item in args.set),
    }
    m = result["median"]
    print(f"{args.seconds:g} s at 30 Hz, median of {len(runs)} run(s): {n_frames} camera frames, "
          f"{m['tracked_frames']:.0f} tracked, {m['listener_frames_in_bag']:.0f} listener frames, "
          f"{m['missed_frames']:.0f} missed grid frames, {m['late_frames']:.0f} published late")
    for name, label in (("camera_to_tracked", "camera -> tracked expression "),
                        ("tracked_to_expression", "tracked -> listener expression"),
                        ("camera_to_expression", "camera -> listener expression")):
        print(f"{label}  p50 {m[name + '_ms']['p50']:7.1f} ms   p99 {m[name + '_ms']['p99']:7.1f} ms")
    print("CPU (% of one core): " + ", ".join(f"{n} {v:.0f}" for n, v in m["cpu_percent_of_one_core"].items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
