"""CPU scheduling parameters of the node executables (``realtime_priority``, ``nice``).

A node executable applies them to every thread of its process; when the OS refuses (no
CAP_SYS_NICE) it warns and runs on with the normal scheduler; a node that shares its process
(``face-expr bringup``, a node built inside a program) leaves the process alone.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from ros_helpers import start, stop

SCHED_RR = 2


def can_use_realtime() -> bool:
    import subprocess
    import sys

    code = "import os; os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def thread_scheduling(pid: int) -> list[tuple[int, int, int]]:
    """(policy, real-time priority, nice) of every thread of a process, from /proc."""
    rows = []
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        fields = stat.read_text().rsplit(")", 1)[1].split()
        # Fields after the command: state is #3, so field #n is fields[n - 3].
        rows.append((int(fields[41 - 3]), int(fields[40 - 3]), int(fields[19 - 3])))
    return rows


def wait_for_log(log: Path, text: str, timeout_s: float = 30.0) -> str:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        content = log.read_text() if log.is_file() else ""
        if text in content:
            return content
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in {log}:\n{log.read_text() if log.is_file() else ''}")


@pytest.fixture
def params(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text("/**:\n  ros__parameters:\n    use_sim_time: false\n")
    return path


@pytest.mark.skipif(not can_use_realtime(), reason="needs CAP_SYS_NICE (root)")
def test_realtime_priority_applies_to_every_thread(tmp_path: Path, params: Path) -> None:
    domain = 60 + os.getpid() % 30
    proc = start("face_driver", params, domain, tmp_path, "-p", "realtime_priority:=3")
    try:
        wait_for_log(tmp_path / "face_driver.log", "driving")
        assert "CPU scheduling: SCHED_RR 3" in (tmp_path / "face_driver.log").read_text()
        threads = thread_scheduling(proc.pid)
        assert len(threads) > 1  # the middleware's threads too
        assert all(policy == SCHED_RR and prio == 3 for policy, prio, _ in threads), threads
    finally:
        stop([proc])


def test_nice_applies_to_every_thread(tmp_path: Path, params: Path) -> None:
    domain = 60 + os.getpid() % 30
    proc = start("face_driver", params, domain, tmp_path, "-p", "realtime_priority:=0", "-p", "nice:=7")
    try:
        wait_for_log(tmp_path / "face_driver.log", "driving")
        threads = thread_scheduling(proc.pid)
        assert all(policy == 0 and nice == 7 for policy, _, nice in threads), threads
    finally:
        stop([proc])


@pytest.mark.skipif(shutil.which("setpriv") is None or not can_use_realtime(),
                    reason="needs setpriv and CAP_SYS_NICE to take away")
def test_refused_realtime_priority_warns_and_runs_normally(tmp_path: Path, params: Path) -> None:
    import subprocess
    import sys

    from ros_helpers import node_env

    exe = Path(sys.executable).parent / "face_driver_node"
    log = tmp_path / "face_driver.log"
    # Without CAP_SYS_NICE, as on a robot where nobody granted an rtprio limit.
    proc = subprocess.Popen(["setpriv", "--bounding-set", "-sys_nice", str(exe), "--ros-args", "--params-file",
                             str(params), "-p", "realtime_priority:=3"], env=node_env(60 + os.getpid() % 30),
                            stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        text = wait_for_log(log, "driving")
        assert "could not set SCHED_RR priority 3" in text and "running with the normal scheduler" in text
        assert proc.poll() is None
        assert all(policy == 0 for policy, _, _ in thread_scheduling(proc.pid))
    finally:
        stop([proc])


def test_a_node_sharing_its_process_leaves_the_scheduling_alone() -> None:
    import rclpy
    from rclpy.parameter import Parameter

    from face_expr_ros.nodes import base
    from face_expr_ros.nodes.face_driver import FaceDriverNode

    assert not base.OWN_PROCESS  # only run_node (a node executable) sets it
    before = os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = FaceDriverNode(context=context, parameter_overrides=[Parameter("realtime_priority", value=3),
                                                                     Parameter("nice", value=5)])
        assert node.cpu_scheduling == "normal (shared process)"  # as /diagnostics reports it
        assert base.apply_scheduling(node, node.settings) == "normal (shared process)"
        node.destroy_node()
    finally:
        context.try_shutdown()
    assert (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)) == before


def test_node_defaults_put_the_control_path_first() -> None:
    """The shipped priorities: face driver > policy > tracker > everything normal > the avatar."""
    from face_expr_ros import config

    prio = {name: schema().realtime_priority for name, schema in config.NODE_SCHEMAS.items()}
    assert prio["face_driver"] > prio["policy"] > prio["face_tracker"] > 0
    assert prio["speech"] == prio["avatar"] == prio["bag_player"] == 0
    assert config.AvatarSettings().nice > 0
