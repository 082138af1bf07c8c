#!/usr/bin/env bash
# Install what the app needs: poppler (system) and a .venv with requirements.txt.
# torch is pinned to 2.13.0 exactly: pip takes the CPU wheel where one is on disk; a range would
# pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
need=()
command -v pdftoppm >/dev/null || need+=(poppler-utils)
if [ "${WITH_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null; then need+=(chromium); fi
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -r "${REQUIREMENTS:-requirements.txt}"
