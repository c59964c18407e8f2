"""The package builds with colcon (ament_python) and its installed command runs."""

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest


def copy_tracked_tree(repo: Path, dest: Path) -> None:
    """Copy what git would check out (tracked + untracked-not-ignored), like a fresh clone."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo, capture_output=True, check=True
    ).stdout.decode().split("\0")
    dest.mkdir(parents=True)
    archive = dest.parent / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        for name in filter(None, files):
            if (repo / name).is_file():
                tar.add(repo / name, arcname=name)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")


def test_colcon_build_installs_scripts_and_share_files(tmp_path, repo_root, venv_bin):
    colcon = venv_bin / "colcon"
    if not colcon.exists():
        pytest.fail(f"colcon is not installed next to {venv_bin}; run `make setup`")
    workspace = tmp_path / "ws"
    copy_tracked_tree(repo_root, workspace / "src" / "face_expr_ros")
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ['PATH']}"}
    build = subprocess.run(
        [str(colcon), "build", "--base-paths", "src"], cwd=workspace, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr

    prefix = workspace / "install" / "face_expr_ros"
    share = prefix / "share" / "face_expr_ros"
    assert (share / "package.xml").is_file()
    assert (share / "config" / "default.yaml").is_file()
    assert (share / "launch" / "robot.launch.py").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "face_expr_ros").is_file()

    script = prefix / "lib" / "face_expr_ros" / "face-expr"
    assert script.is_file(), f"console script not installed where `ros2 run` looks: {script}"
    site = next(prefix.glob("lib/python3*/site-packages"))
    run_env = {
        **env,
        "PYTHONPATH": f"{site}:{os.environ.get('PYTHONPATH', '')}",
        "AMENT_PREFIX_PATH": f"{prefix}:{os.environ.get('AMENT_PREFIX_PATH', '')}",
    }
    shown = subprocess.run([str(script), "--help"], env=run_env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "usage: face-expr" in shown.stdout and "doctor" in shown.stdout

    # The command runs the installed copy of the library and finds its share files through ament.
    where = subprocess.run(
        [str(venv_bin / "python"), "-c",
         "import face_expr_ros, face_expr_ros.config as c; print(face_expr_ros.__file__); "
         "print(c.default_config_path())"],
        env=run_env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert where.returncode == 0, where.stderr
    module_file, config_file = where.stdout.split()
    assert Path(module_file).is_relative_to(prefix), module_file
    assert Path(config_file) == share / "config" / "default.yaml"
    # Every executable and file the launch files name exists in the install (checked statically:
    # the launch package is not installed here).
    import re

    for launch_file in (share / "launch").glob("*.launch.py"):
        text = launch_file.read_text()
        executables = set(re.findall(r'"(\w+_node)"', text))
        assert executables, launch_file
        for exe in executables:
            assert (prefix / "lib" / "face_expr_ros" / exe).is_file(), f"{launch_file.name} names missing {exe}"
        for rel in re.findall(r'DEFAULT_PARAMS = "([^"]+)"', text):
            assert (share / rel).is_file(), f"{launch_file.name} names missing {rel}"
    shutil.rmtree(workspace / "build", ignore_errors=True)
