#!/usr/bin/env bash
# Installs everything tflm-train needs on a fresh Debian / Ubuntu machine (run as root or with sudo):
# system packages with apt, then the Python packages into the project's own virtual environment
# .venv (a system Python that refuses pip installs, PEP 668, is never touched).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
    g++ python3-venv python3-dev gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib \
    qemu-system-arm dataset-fashion-mnist clang libfuzzer-14-dev libclang-rt-14-dev >/dev/null
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q -e .
echo "tflm-train installed in $(pwd)/.venv (run: .venv/bin/tflm-train, .venv/bin/python)"
