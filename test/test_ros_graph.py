"""The node graph as separate processes: a bag camera and microphone -> tracker, speech -> policy
-> face driver and avatar, checked from a probe node in the test process over real DDS.

The policy is an untrained one (``policy.fixtures.make_policy``): this test is about wiring,
rates, names and limits, not about the quality of the expressions.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
from ros_helpers import Probe, start, stop

from face_expr_ros import expression as ex

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is installed by `make setup`")

BAG_SECONDS = 8.0
GRAPH = ("face_tracker", "speech", "policy", "face_driver", "avatar")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    from face_expr_ros.policy.fixtures import make_policy
    from face_expr_ros.sim.conversation import generate_conversation
    from face_expr_ros.sim.media import write_media

    root = tmp_path_factory.mktemp("graph")
    make_policy(root / "policy")
    conv = generate_conversation(11, with_audio=True)
    files = write_media(conv, root / "media", storages=("sqlite3",), mux=False, progress=False,
                        max_seconds=BAG_SECONDS)
    params = root / "params.yaml"
    params.write_text(f"""
/**:
  ros__parameters:
    use_sim_time: true
    diagnostics_period_s: 0.5
face_tracker:
  ros__parameters:
    compressed: true
    reliable_images: true
    max_image_age_s: 5.0
policy:
  ros__parameters:
    model_dir: {root / "policy"}
    seed: 0
avatar:
  ros__parameters:
    avatar: mesh
    size: 128
    rate_hz: 10.0
""")
    return root, params, files.bags["sqlite3"]


@pytest.fixture(scope="module")
def run_graph(scenario):
    root, params, bag = scenario
    domain = 120 + os.getpid() % 80
    probe = Probe(domain)
    procs = [start(name, params, domain, root) for name in GRAPH]
    try:
        probe.spin(12.0)  # start-up: imports, models, DDS discovery
        player = start("bag_player", params, domain, root, "-p", f"bag:={bag}", "-p", "publish_clock:=true",
                       "-p", "start_delay_s:=1.0")
        procs.append(player)
        probe.spin(BAG_SECONDS + 6.0)
        alive = {name: proc.poll() is None for name, proc in zip(GRAPH, procs)}
        yield probe, alive, root
    finally:
        stop(procs)
        probe.close()


def test_messages_flow_camera_to_face(run_graph):
    probe, alive, root = run_graph
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(root.glob("*.log")))
    assert all(alive.values()), f"a node died: {alive}\n{logs}"
    # Tracker: the speaker's face in most of the 30 Hz camera frames of the bag.
    assert len(probe.speaker) > 0.5 * BAG_SECONDS * 30, logs
    names = list(probe.speaker[0][1].name)
    assert names == list(ex.EXPRESSION_NAMES)
    # Policy: one expression per 30 Hz tick of the bag's clock.
    assert len(probe.expression) > 0.7 * BAG_SECONDS * 30, logs
    frames = np.array([m.position for _, m in probe.expression])
    assert frames.shape[1] == ex.DIM and ex.is_valid(frames)
    assert list(probe.expression[-1][1].name) == list(ex.EXPRESSION_NAMES)
    # Face driver: commands at its own rate, all inside the generic servo face's limits.
    from face_expr_ros.config import package_share
    from face_expr_ros.robot.face_map import RobotFaceMap

    face = RobotFaceMap.from_yaml(package_share() / "config" / "robot_faces" / "generic_servo_face.yaml")
    commands = np.array([m.data for _, m in probe.commands])
    assert len(commands) > 20 and commands.shape[1] == len(face.joint_names)
    assert np.all(commands >= face.lower - 1e-9) and np.all(commands <= face.upper + 1e-9)
    # Avatar: rendered images of the configured size.
    assert probe.images and (probe.images[-1].height, probe.images[-1].width) == (128, 128)
    assert probe.images[-1].encoding == "bgr8"


def test_diagnostics_report_every_node(run_graph):
    probe, _, _ = run_graph
    reported = {name.split(": ", 1)[-1] for name in probe.diagnostics}
    assert set(GRAPH) <= reported, reported
    policy = probe.diagnostics["face_expr_ros: policy"]
    assert policy["backend"] == "onnxruntime" and float(policy["steps"]) > 0
    # Each frame was stepped once, on its tracked camera frame or at its deadline (which one
    # depends on the tracker's latency on this machine; the logic is tested below).
    assert int(policy["steps_on_input"]) + int(policy["steps_on_deadline"]) == int(policy["steps"])


def test_capture_end_ns_uses_portaudio_times_when_given():
    from types import SimpleNamespace

    from face_expr_ros.nodes.microphone import capture_end_ns

    # The block's first sample was captured 50 ms ago; 512 samples at 16 kHz last 32 ms.
    info = SimpleNamespace(inputBufferAdcTime=10.0, currentTime=10.05)
    assert capture_end_ns(1_000_000_000, 512, 16000, info) == 1_000_000_000 - 50_000_000 + 32_000_000
    # Host APIs without timing information (zeros): the callback time.
    assert capture_end_ns(1_000_000_000, 512, 16000, SimpleNamespace(inputBufferAdcTime=0.0, currentTime=0.0)) \
        == 1_000_000_000


def test_stamped_history_watermark():
    from face_expr_ros.nodes.policy import StampedHistory

    h = StampedHistory(keep_ns=10**9)
    assert h.watermark_ns is None and h.at_or_before(5) is None
    h.add(100, "a")
    h.mark(200)  # "nothing at 200" (the tracker saw no face)
    h.add(150, "b")  # late, inserted in place
    assert h.watermark_ns == 200
    assert h.at_or_before(120) == (100, "a") and h.at_or_before(199) == (150, "b")
    assert h.at_or_before(199, not_older_than_ns=10) is None


@pytest.fixture
def policy_node(scenario):
    """A policy node in this process on a hand-driven sim clock, with its inputs fed directly."""
    import rclpy
    from rclpy.parameter import Parameter

    from face_expr_ros.nodes.policy import PolicyNode

    root, _, _ = scenario
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=200 + os.getpid() % 30)
    made = []

    def make(**params: object) -> object:
        overrides = [Parameter("use_sim_time", value=True), Parameter("model_dir", value=str(root / "policy")),
                     Parameter("seed", value=0)] + [Parameter(k, value=v) for k, v in params.items()]
        node = PolicyNode(context=context, parameter_overrides=overrides)
        node.get_clock()._set_ros_time_is_active(True)
        made.append(node)
        return node

    yield make, context
    for node in made:
        node.destroy_node()
    context.try_shutdown()


def set_clock(node, seconds: float) -> None:
    from rclpy.time import Time

    node.get_clock().set_ros_time_override(Time(nanoseconds=round(seconds * 1e9)))


def joint_state(stamp_ns: int, names: list[str], values: list[float]):
    from sensor_msgs.msg import JointState

    from face_expr_ros import messages

    msg = JointState(name=names, position=values)
    messages.fill_stamp(msg.header.stamp, stamp_ns)
    return msg


def test_policy_steps_each_frame_when_its_tracked_frame_arrives(policy_node):
    from face_expr_ros.nodes.policy import frame_ns

    make, _ = policy_node
    node = make(max_wait_s=0.03)
    face = list(ex.EXPRESSION_NAMES)
    set_clock(node, 1.0)
    node.tick()
    assert node.next_frame == 30 and node.meter.count == 0, "frame 30 waits for its tracked frame"
    set_clock(node, 1.02)
    node.on_speaker(joint_state(frame_ns(30), face, [0.0] * ex.DIM))
    assert node.next_frame == 31 and node.steps_on_input == 1, "stepped on arrival, not on the next tick"
    set_clock(node, 1.0334 + 0.031)
    node.tick()
    assert node.next_frame == 32 and node.steps_on_deadline == 1, "frame 31 gave up on its tracked frame"
    node.on_speaker(joint_state(frame_ns(32), [], []))  # the tracker saw no face: no need to wait
    assert node.next_frame == 33 and node.steps_on_input == 2
    node.on_speaker(joint_state(frame_ns(40), face, [0.0] * ex.DIM))
    assert node.next_frame == 33, "never ahead of the clock, whatever the camera's stamps say"


def test_policy_waits_for_every_input_stream_with_wait_for_inputs(policy_node):
    import rclpy
    from sensor_msgs.msg import JointState

    from face_expr_ros.nodes.policy import frame_ns

    make, context = policy_node
    node = make(wait_for_inputs=True, max_wait_s=5.0)
    helper = rclpy.create_node("inputs", context=context)
    helper.create_publisher(JointState, "/face_expr/speaker_expression", 10)
    helper.create_publisher(JointState, "/face_expr/audio_features", 10)
    try:
        for _ in range(100):
            if node.count_publishers("/face_expr/audio_features"):
                break
            time.sleep(0.02)
        face, audio = list(ex.EXPRESSION_NAMES), [0.0] * node.policy.cfg.audio_dim
        set_clock(node, 1.0)
        node.tick()
        node.on_speaker(joint_state(frame_ns(30), face, [0.0] * ex.DIM))
        assert node.meter.count == 0, "waits for the audio features too"
        node.on_audio(joint_state(frame_ns(30), [], audio))
        assert node.next_frame == 31 and node.steps_on_input == 1
        # No words publisher: words are not waited for. Without input, frames wait max_wait_s.
        set_clock(node, 1.0 + 5.1)
        node.tick()
        assert node.next_frame == 34 and node.steps_on_deadline == 3
        assert node.report.counts["late_inputs"] == 3
    finally:
        helper.destroy_node()


def test_bag_player_holds_the_bag_while_the_graph_lags(tmp_path):
    """Back-pressure (max_lag_s): the player waits for a pace topic that is too far behind."""
    import rclpy
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image, JointState

    from face_expr_ros import bags
    from face_expr_ros.nodes.bag_player import BagPlayerNode
    from face_expr_ros.nodes.base import STATE_QOS, STREAM_QOS

    image = np.zeros((8, 8, 3), np.uint8)
    with bags.BagWriter(tmp_path / "bag") as bag:
        for t_ns in (0, 1_000_000_000, 3_000_000_000):
            bag.write("/camera/image_raw", bags.image_message(t_ns, image), t_ns)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=215 + os.getpid() % 15)  # Fast DDS takes domains up to 232
    helper = rclpy.create_node("graph", context=context)
    received: list[int] = []
    helper.create_subscription(Image, "/camera/image_raw", lambda m: received.append(m.header.stamp.sec), STATE_QOS)
    tracked = helper.create_publisher(JointState, "/face_expr/speaker_expression", STREAM_QOS)
    player = BagPlayerNode(context=context, parameter_overrides=[
        Parameter("bag", value=str(tmp_path / "bag")), Parameter("start_delay_s", value=0.5),
        Parameter("max_lag_s", value=1.0)])
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(helper)
    executor.add_node(player)

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            executor.spin_once(timeout_sec=0.02)

    try:
        tracked.publish(joint_state(0, [], []))  # the tracker is at the bag's start
        spin(3.0)  # the frame at 3 s would be due at 3.5 s, but the tracker is 3 s behind it
        assert received == [0, 1] and player.paused_s > 1.0 and not player.finished.is_set()
        tracked.publish(joint_state(2_500_000_000, [], []))  # caught up to within 1 s
        spin(3.0)
        assert received == [0, 1, 3] and player.finished.is_set()
    finally:
        executor.shutdown()
        player.destroy_node()
        helper.destroy_node()
        context.try_shutdown()
