"""The main job (`make demo`): show what the system does today, end to end where it can.

The demo grows with the project. Each stage runs when its component exists and says so
plainly when it does not; the final form replays a generated conversation through the
whole ROS 2 node graph.
"""

from __future__ import annotations

import csv
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from face_expr_ros import expression as ex


@dataclass
class DemoReport:
    out_dir: Path
    written: list[Path] = field(default_factory=list)
    not_built: list[str] = field(default_factory=list)
    summary: dict[str, object] = field(default_factory=dict)


def scripted_listener_clip(seconds: float = 6.0, fps: float = ex.FPS) -> NDArray[np.float32]:
    """A hand-written listener reaction: attentive rest, a nod, a growing smile, a blink.

    Stands in for the policy until it exists; every value goes through ``expression.clamp``.
    """
    t = np.arange(int(seconds * fps)) / fps
    frames = np.zeros((len(t), ex.DIM), dtype=np.float64)

    def bump(center: float, width: float) -> NDArray[np.float64]:
        return np.exp(-0.5 * ((t - center) / width) ** 2)

    smile = 0.7 / (1 + np.exp(-(t - 3.0) * 3))
    for side in ("Left", "Right"):
        frames[:, ex.index("mouthSmile" + side)] = smile
        frames[:, ex.index("cheekSquint" + side)] = 0.4 * smile
        frames[:, ex.index("eyeBlink" + side)] = bump(1.2, 0.05) + bump(4.6, 0.05)
    frames[:, ex.index("browInnerUp")] = 0.5 * bump(1.8, 0.4)
    frames[:, ex.index("headPitch")] = np.deg2rad(8) * (bump(2.2, 0.18) + 0.7 * bump(2.7, 0.18))
    frames[:, ex.index("headYaw")] = np.deg2rad(6) * np.sin(2 * np.pi * t / seconds)
    frames[:, ex.index("headRoll")] = np.deg2rad(4) * smile
    return ex.clamp(frames)


def write_trace_csv(path: Path, frames: NDArray[np.floating], fps: float = ex.FPS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", *ex.EXPRESSION_NAMES])
        for k, frame in enumerate(frames):
            writer.writerow([f"{k / fps:.4f}", *(f"{v:.5f}" for v in frame)])
    return path


def replay_through_graph(bag: Path, out_bag: Path, params: Path, log_dir: Path) -> None:
    """Play ``bag`` into the node graph, one process per node as ``ros2 launch`` would start them
    (on two cores, separate processes keep up at 30 Hz where one process does not), and record
    the outputs. This module stays free of rclpy: the nodes are child processes."""
    import os
    import sys

    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST"),
           "ROS_DOMAIN_ID": os.environ.get("ROS_DOMAIN_ID", str(40 + os.getpid() % 50))}
    log_dir.mkdir(parents=True, exist_ok=True)

    def start(name: str, *extra: str) -> subprocess.Popen:
        log = (log_dir / f"{name}.log").open("w")
        cmd = [str(bin_dir / f"{name}_node"), "--ros-args", "--params-file", str(params), *extra]
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    nodes = [start(n) for n in ("face_tracker", "speech", "policy", "face_driver")]
    nodes.append(start("bag_recorder", "-p", f"out:={out_bag}"))
    try:
        player = start("bag_player", "-p", f"bag:={bag}", "-p", "publish_clock:=true", "-p", "exit_on_end:=true",
                       "-p", "start_delay_s:=8.0")  # the other nodes load their models meanwhile
        if player.wait(timeout=600) != 0:
            raise RuntimeError(f"the bag player failed; see {log_dir / 'bag_player.log'}")
        time.sleep(2.0)  # the last outputs reach the recorder
    finally:
        stop_processes(nodes, timeout=15.0)


def stop_processes(procs: list[subprocess.Popen], timeout: float) -> None:
    """Ctrl-C every still running node process, then kill those not gone after ``timeout`` s each."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def read_outputs(bag: Path) -> dict[str, object]:
    """Listener frames, tracked speaker frames, words and latencies from the recorded graph outputs."""
    from face_expr_ros import bags, messages

    listener, speaker, words, latencies = [], [], [], []
    for m in bags.read_bag(bag):
        if m.topic == "/face_expr/expression":
            listener.append((messages.stamp_to_ns(m.msg.header.stamp), messages.expression_from_joint_state(m.msg)))
        elif m.topic == "/face_expr/speaker_expression" and len(m.msg.name):  # empty: no face in that frame
            stamp = messages.stamp_to_ns(m.msg.header.stamp)
            speaker.append((stamp, messages.expression_from_joint_state(m.msg)))
            latencies.append((m.t_ns - stamp) / 1e6)  # camera stamp -> tracked expression received
        elif m.topic == "/face_expr/transcript":
            words += [(w, m.t_ns / 1e9, m.t_ns / 1e9) for w in m.msg.data.split()]
    listener.sort(key=lambda item: item[0])
    return {"listener": listener, "speaker": speaker, "words": words, "tracker_latency_ms": latencies}


def run_demo(out_dir: Path, seed: int = 3, seconds: float = 20.0, progress: bool = True) -> DemoReport:
    """Generate a conversation, write it as a bag, replay it through the node graph (tracker,
    speech with pocketsphinx, policy on ONNX Runtime, face driver) in real time, and show the
    result: a side-by-side video with captions and sound, plots, rater scores, latencies."""
    import json

    from face_expr_ros.config import package_share
    from face_expr_ros.eval.plots import plot_expression_traces
    from face_expr_ros.eval.video import side_by_side, still_frame
    from face_expr_ros.sim.conversation import generate_conversation
    from face_expr_ros.sim.media import truncate, write_media
    from face_expr_ros.sim.raters import CRITERIA, RaterPanel

    report = DemoReport(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    conversation_dir, graph_bag = out_dir / "conversation", out_dir / "graph_outputs"
    # A second run replaces the first: rosbag2 refuses to write into an existing bag folder.
    for previous in (conversation_dir, graph_bag):
        if previous.exists():
            shutil.rmtree(previous)
    conv = truncate(generate_conversation(seed, with_audio=True), seconds)
    files = write_media(conv, conversation_dir, storages=("mcap",), progress=progress)
    report.written += [files.video_with_sound or files.video, *files.bags.values()]
    if progress:
        print(f"replaying {seconds:g} s through the node graph (real time)...")
    replay_through_graph(files.bags["mcap"], graph_bag, package_share() / "config" / "replay.yaml",
                         out_dir / "logs")
    report.written += [graph_bag, out_dir / "logs"]
    outputs = read_outputs(graph_bag)
    n = len(conv.speaker_track)
    listener = np.zeros((n, ex.DIM), np.float32)
    for stamp, frame in outputs["listener"]:
        k = round(stamp / 1e9 * ex.FPS)
        if 0 <= k < n:
            listener[k] = frame
    video = side_by_side(out_dir / "demo.mp4", conv.speaker_track, listener, outputs["words"], conv.audio,
                         conv.timeline.sample_rate, labels=("speaker (camera)", "robot listener (policy)"),
                         progress=progress)
    report.written.append(video)
    report.written.append(still_frame(video, min(seconds / 2, 8.0), out_dir / "demo_frame.png"))
    report.written.append(write_trace_csv(out_dir / "listener_trace.csv", listener))
    tracked = np.zeros_like(listener)
    for stamp, frame in outputs["speaker"]:
        k = round(stamp / 1e9 * ex.FPS)
        if 0 <= k < n:
            tracked[k] = frame
    report.written.append(plot_expression_traces(
        {"speaker (truth)": conv.speaker_track, "speaker (tracked)": tracked, "listener (policy)": listener},
        out_dir / "expression_traces.png", title=f"Conversation {seed}: the graph's view and its reaction"))
    ratings = RaterPanel.from_seed(1000, 5).rate(listener, conv.timeline)
    scores = {c: round(float(ratings.mean[0, k]), 2) for k, c in enumerate(CRITERIA)}
    scores["overall"] = round(float(ratings.overall[0]), 2)
    lat = np.array(outputs["tracker_latency_ms"]) if outputs["tracker_latency_ms"] else np.array([np.nan])
    metrics = {"seed": seed, "seconds": seconds, "listener": "policy (models/policy, ONNX Runtime)",
               "listener_frames": len(outputs["listener"]), "expected_frames": n,
               "tracked_speaker_frames": len(outputs["speaker"]), "words_recognised": len(outputs["words"]),
               "camera_to_tracked_ms_p50": round(float(np.nanmedian(lat)), 1),
               "camera_to_tracked_ms_p99": round(float(np.nanpercentile(lat, 99)), 1),
               "simulated_rater_scores": scores}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    report.written.append(out_dir / "metrics.json")
    report.summary = metrics
    report.not_built += ["learning from ratings (reward model, DPO, RL, online learner)"]
    return report
