#!/usr/bin/env bash
# BlazePose's landmark models for MediaPipe's legacy pose solution (COACH_POSE_MODEL=lite|full|heavy).
# The mediapipe 0.10.21 wheel ships only pose_landmark_full.tflite and would download lite and heavy
# from Google's storage at run time; we take the same three files from the npm package of MediaPipe
# Pose instead (full is byte-identical to the wheel's), pinned by sha256, so nothing is fetched when
# the service runs. Safe to run again: files already present with the right hash are left alone,
# and then npm is not needed at all (the pose image uses that to verify what it copied).
#
#   scripts/install-pose-models.sh DIR    # DIR: mediapipe/modules/pose_landmark of the Python env
set -euo pipefail
dir="${1:?usage: $0 MEDIAPIPE_POSE_LANDMARK_DIR}"
PKG="@mediapipe/pose@0.5.1675469404"
TGZ_SHA256=8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84
# keep in step with POSE_MODEL_SHA256 in services/pose/blazepose.py (a test compares them)
declare -A SHA256=(
  [lite]=f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61
  [full]=e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f
  [heavy]=59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe
)

has() { echo "${SHA256[$1]}  $dir/pose_landmark_$1.tflite" | sha256sum -c --status 2>/dev/null; }

[ -d "$dir" ] || { echo "install-pose-models: no directory $dir" >&2; exit 1; }
missing=()
for m in lite full heavy; do has "$m" || missing+=("$m"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "pose models: lite, full, heavy present in $dir"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$PKG" >/dev/null)
tgz="$tmp/mediapipe-pose-0.5.1675469404.tgz"
echo "$TGZ_SHA256  $tgz" | sha256sum -c --quiet
for m in "${missing[@]}"; do
  f="package/pose_landmark_$m.tflite"
  tar -xzf "$tgz" -C "$tmp" "$f"
  echo "${SHA256[$m]}  $tmp/$f" | sha256sum -c --quiet
  install -m 0644 "$tmp/$f" "$dir/"   # install: a fresh file, not the tarball's owner and 0750 mode
done
echo "pose models: installed ${missing[*]} into $dir"
