"""The node graph as separate processes: a bag camera and microphone -> tracker, speech -> policy
-> face driver and avatar, checked from a probe node in the test process over real DDS.

The policy is an untrained one (``policy.fixtures.make_policy``): this test is about wiring,
rates, names and limits, not about the quality of the expressions.
"""

from __future__ import annotations

import os
import shutil

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
