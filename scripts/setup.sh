#!/usr/bin/env bash
# Install what the app needs: poppler and Tesseract (system) and a .venv with requirements.txt, every package at
# the version constraints.txt pins (given to pip with -c: requirements.txt does not name it, see
# docs/space.md). Needs Python 3.11 or newer (PYTHON=python3.12 to pick another interpreter).
#
# torch: where there is no CUDA GPU (no working nvidia-smi) and the machine is Linux or Windows, the
# CPU build comes from the PyTorch CPU index (~200 MB) instead of PyPI's CUDA build (~530 MB plus
# ~3 GB of nvidia-* wheels a CPU never uses). If that index cannot be reached, pip falls back to
# PyPI. TORCH_INDEX=pypi skips the CPU index; TORCH_INDEX=<url> uses another index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && PY=.venv/bin/python   # an existing venv is what gets used
if ! command -v "$PY" >/dev/null; then
  echo "vdr_app needs Python 3.11 or newer: $PY was not found (install Python 3.11+, then PYTHON=python3.11 $0)" >&2
  exit 1
elif ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "vdr_app needs Python 3.11 or newer, but $PY is $("$PY" -V 2>&1): install Python 3.11+, then PYTHON=python3.11 $0 (remove an older .venv first)" >&2
  exit 1
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
need=()
command -v pdftoppm >/dev/null || need+=(poppler-utils)
# OCR of scans in the scripts rapidocr's bundled model cannot read (Cyrillic, Arabic, Korean):
# Tesseract and its language packs (see docs/ocr.md). packages.txt and the Dockerfile list the same.
for package in tesseract-ocr tesseract-ocr-rus tesseract-ocr-ara tesseract-ocr-kor; do
  dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if [ "${WITH_BROWSER:-0}" = 1 ] && ! command -v chromium >/dev/null; then need+=(chromium); fi
# Fonts the OCR tests draw their Latin, Cyrillic, Arabic and CJK pages with.
if [ "${WITH_TEST_FONTS:-0}" = 1 ]; then
  for package in fonts-dejavu-core fonts-wqy-microhei; do
    dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
  done
fi
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt)
TORCH=(torch==2.13.0 torchvision==0.28.0)   # the pair requirements.txt pins

have_torch() { .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; }
has_cuda_gpu() { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }

if ! have_torch; then
  index=${TORCH_INDEX:-}
  if [ -z "$index" ] && ! has_cuda_gpu && [ "$(uname -s)" != Darwin ]; then
    index=https://download.pytorch.org/whl/cpu
  fi
  if [ -n "$index" ] && [ "$index" != pypi ]; then
    echo "installing the CPU build of torch from $index"
    # Short timeout and no retries: where the index is unreachable the fallback starts at once.
    # --no-deps: their dependencies come from the next step.
    "${PIP[@]}" --no-deps --index-url "$index" --timeout 15 --retries 1 "${TORCH[@]}" \
      || echo "the PyTorch index $index could not be used: installing torch from PyPI instead"
  fi
fi
"${PIP[@]}" -r "${REQUIREMENTS:-requirements.txt}"
