"""Replaying a bag through `face-expr bringup --bag` with use_sim_time and a fixed seed gives the
same expression stream every time; and a bag recorded by the recorder plays back through the graph."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from face_expr_ros import bags, messages
from face_expr_ros.config import package_share

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is installed by `make setup`")]


@pytest.fixture(scope="module")
def replay_setup(tmp_path_factory):
    from face_expr_ros.policy.fixtures import make_policy
    from face_expr_ros.sim.conversation import generate_conversation
    from face_expr_ros.sim.media import write_media

    root = tmp_path_factory.mktemp("replay")
    make_policy(root / "policy")
    conv = generate_conversation(5, with_audio=True)
    files = write_media(conv, root / "media", storages=("mcap",), mux=False, progress=False, max_seconds=6.0)
    params = root / "replay.yaml"
    text = (package_share() / "config" / "replay.yaml").read_text()
    params.write_text(text.replace("policy:\n  ros__parameters:\n",
                                   f"policy:\n  ros__parameters:\n    model_dir: {root / 'policy'}\n"))
    return root, params, files.bags["mcap"]


def replay(root: Path, params: Path, bag: Path, name: str, domain: int) -> list[tuple[int, np.ndarray]]:
    out = root / name
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    cmd = [str(Path(sys.executable).parent / "face-expr"), "bringup", "--params", str(params), "--bag", str(bag),
           "--record", str(out), "--nodes", "face_tracker", "speech", "policy", "face_driver"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    stream = [(messages.stamp_to_ns(m.msg.header.stamp), messages.expression_from_joint_state(m.msg))
              for m in bags.read_bag(out, ["/face_expr/expression"])]
    return sorted(stream, key=lambda item: item[0])


def test_two_replays_give_the_same_expression_stream(replay_setup):
    """Exact, not approximate: the audio is dated by stamps that travel with it (the player's
    stamped PCM), the policy waits for every input stream instead of taking what has arrived,
    and sampling is seeded (docs/ros.md, "Replays are repeatable")."""
    root, params, bag = replay_setup
    domain = 60 + os.getpid() % 40
    first = replay(root, params, bag, "run1", domain)
    second = replay(root, params, bag, "run2", domain)
    assert len(first) > 100, "the policy published through the whole bag"
    # Frames are on the bag's 30 Hz grid: both runs publish the same frames, with the same values.
    a, b = dict(first), dict(second)
    assert sorted(a) == sorted(b), f"frames only in one run: {sorted(set(a) ^ set(b))[:10]}"
    diffs = [float(np.abs(a[t] - b[t]).max()) for t in a]
    assert max(diffs) == 0.0, f"{sum(d > 0 for d in diffs)} of {len(a)} frames differ"
    # ... and they are not trivially constant.
    assert np.std(np.array([a[t] for t in a]), axis=0).max() > 1e-3


def test_recorded_bag_plays_back_through_the_graph(replay_setup):
    """The recorder's output is a valid bag the player can feed to the graph again."""
    root, params, _ = replay_setup
    recorded = root / "run1"
    if not recorded.exists():
        pytest.skip("needs the first test's recording")
    topics = bags.bag_topics(recorded)
    assert "/face_expr/expression" in topics and "/face_expr/speaker_expression" in topics
    # Feed the recorded speaker expressions back to the policy alone (no camera needed).
    domain = 100 + os.getpid() % 20
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    out = root / "rerun"
    cmd = [str(Path(sys.executable).parent / "face-expr"), "bringup", "--params", str(params), "--bag",
           str(recorded), "--bag-topics", "/face_expr/speaker_expression", "--record", str(out), "--nodes", "policy"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    replayed = list(bags.read_bag(out, ["/face_expr/expression"]))
    assert len(replayed) > 50
