#!/usr/bin/env bash
# One-shot, idempotent set-up: Debian packages, a .venv with the pinned requirements, the ROS 2
# client libraries as wheels (only where no system ROS 2 is sourced), and this package.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
APT_PACKAGES=(espeak-ng sox ffmpeg libportaudio2 libgl1 libglib2.0-0)

missing=()
if command -v dpkg >/dev/null 2>&1; then
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
      echo "[setup] error: need root or sudo to install ${missing[*]} (apt-get install ${missing[*]})" >&2
      exit 1
    fi
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

requirements=(requirements.txt requirements-dev.txt)
venv_flags=()
if [ -n "${ROS_DISTRO:-}" ]; then
  # A sourced ROS 2 provides rclpy and the messages; let the venv see them.
  echo "[setup] using the sourced ROS 2 $ROS_DISTRO"
  venv_flags+=(--system-site-packages)
else
  requirements+=(requirements-ros.txt)
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PYTHON" -m venv "${venv_flags[@]}" "$VENV"
fi

stamp="$VENV/.face-expr-setup"
want=$(cat "${requirements[@]}" setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing Python packages (first run: a few minutes, about 3 GB)"
  args=()
  for r in "${requirements[@]}"; do args+=(-r "$r"); done
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${args[@]}" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e . 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  "$VENV/bin/python" -c "import face_expr_ros, numpy, onnxruntime, mediapipe, rclpy" \
    || { echo "[setup] error: the installed environment does not import; see the pip output above" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
echo "[setup] ready: $VENV"
