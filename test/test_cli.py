"""The face-expr command: help on every subcommand, and the doctor's report on this machine."""

import json
import subprocess
from pathlib import Path

import pytest

from face_expr_ros import cli


def run(venv_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv_bin / "face-expr"), *args], capture_output=True, text=True, timeout=120)


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for name in ("doctor", "demo"):
        assert name in out


@pytest.mark.parametrize("name", cli.SUBCOMMANDS)
def test_every_subcommand_has_help(name, capsys):
    parser = cli.build_parser()
    with pytest.raises(SystemExit) as done:
        parser.parse_args([name, "--help"])
    assert done.value.code == 0
    assert f"usage: face-expr {name}" in capsys.readouterr().out


def test_no_subcommand_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "usage: face-expr" in capsys.readouterr().out


def no_sound_card() -> bool:
    cards = Path("/proc/asound/cards")
    return not cards.exists() or "no soundcards" in cards.read_text()


def test_doctor_reports_this_machine(venv_bin):
    done = run(venv_bin, "doctor", "--json")
    report = json.loads(done.stdout)
    rows = {row["component"]: row for row in report["checks"]}
    assert done.returncode == 0 and report["embedded_default_ready"], done.stdout
    assert rows["ROS 2 client (rclpy)"]["status"] == "OK"
    assert "rmw_" in rows["ROS 2 client (rclpy)"]["detail"]
    assert rows["ONNX Runtime"]["status"] == "OK"
    assert "CPUExecutionProvider" in rows["ONNX Runtime"]["detail"]
    assert rows["MediaPipe face mesh"]["status"] == "OK"
    assert rows["ASR: pocketsphinx"]["status"] == "OK"
    if not Path("/dev/nvidia0").exists():
        assert rows["TensorRT"]["status"] == "missing"
        assert "GPU" in rows["TensorRT"]["detail"] and rows["TensorRT"]["fix"]
    if no_sound_card():
        assert rows["Audio input"]["status"] == "missing"
        assert "no audio device" in rows["Audio input"]["detail"]


def test_doctor_table_is_readable(venv_bin):
    done = run(venv_bin, "doctor")
    assert done.returncode == 0
    assert "Embedded default: ready." in done.stdout
    assert "TensorRT" in done.stdout and "how to fix" in done.stdout
