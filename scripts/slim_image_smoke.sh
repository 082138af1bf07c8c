#!/usr/bin/env bash
# The Docker image recipe, exercised without Docker: a minimal Debian bookworm root built with
# mmdebstrap from Debian's packages (python3 3.11, python3-venv, ca-certificates, poppler-utils;
# no X or GL libraries added, like python:3.11-slim), the app installed as the Dockerfile does,
# and a smoke test run inside it as the non-root user 1000, offline (scripts/slim_smoke.py).
#
# Run on purpose: NOT part of `make test` or CI. Needs root (mmdebstrap, chroot, mounts in a
# private namespace), Debian's mirror and PyPI; it downloads ~1 GB and takes several minutes.
#
#   sudo HOST_PYTHON=.venv/bin/python scripts/slim_image_smoke.sh [options]
#
#   --root DIR        where to build the root (new or empty; default: a fresh /tmp/vdr-slim-root.*)
#   --keep            keep the root afterwards (default: deleted; it is ~2 GB)
#   --wheels DIR      local wheels offered to the torch step's fallback (default: $LOCAL_WHEELS, else none)
#   --torch-index URL the PyTorch CPU index the Dockerfile uses (default: https://download.pytorch.org/whl/cpu)
#   --sources FILE    apt sources for the root (default: this host's Debian sources)
#   --real-scan PDF   also index a real scan (default: the corpus' Slerexe fax letter, if found)
#
# Steps, as in the Dockerfile: (1) the base root; (2) a user with UID 1000, /data, the repo's
# tracked files (git archive; uncommitted edits of tracked files included); (3) torch + torchvision
# without dependencies from the PyTorch CPU index, or where it cannot be reached from PyPI with
# --find-links to the local wheels (pip prefers 2.13.0+cpu there over PyPI's CUDA 2.13.0);
# (4) pip install -r requirements.txt (pinned by constraints.txt). Differences from the image: a
# venv (Debian's python3 is "externally managed", so no `pip install --user`) and Debian's Python
# 3.11.2 instead of python.org's build. Then (5) no libGL anywhere, (6) the smoke test (run with no
# network at all when `unshare --net` works), (7) installed sizes, and the time of each step.
# Exits non-zero if any step or check fails.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT="" KEEP=0 TORCH_INDEX=https://download.pytorch.org/whl/cpu
WHEELS=${LOCAL_WHEELS:-}  # a folder of wheels (e.g. a CPU torch) for machines that cannot reach the PyTorch index
SOURCES=/etc/apt/sources.list.d/debian.sources; [ -f "$SOURCES" ] || SOURCES=/etc/apt/sources.list
REAL_SCAN=""
for candidate in "${VDR_CORPUS_DIR:-}" "$REPO/../shared/corpus"; do
  if [ -n "$candidate" ] && [ -f "$candidate/pdfs/slerexe-fax-letter-scan.pdf" ]; then
    REAL_SCAN=$candidate/pdfs/slerexe-fax-letter-scan.pdf; break
  fi
done
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --wheels) WHEELS=$2; shift 2 ;;
    --torch-index) TORCH_INDEX=$2; shift 2 ;;
    --sources) SOURCES=$2; shift 2 ;;
    --real-scan) REAL_SCAN=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (mmdebstrap, chroot and mounts need it)" >&2; exit 2; }
HOST_PYTHON=${HOST_PYTHON:-$REPO/.venv/bin/python}
"$HOST_PYTHON" -c "import reportlab" 2>/dev/null \
  || { echo "HOST_PYTHON=$HOST_PYTHON needs reportlab to make the test PDFs (a venv from make test)" >&2; exit 2; }
renice -n 10 $$ >/dev/null 2>&1 || true   # a background job: leave the CPU to interactive work

if [ -z "$ROOT" ]; then
  ROOT=$(mktemp -d /tmp/vdr-slim-root.XXXXXX)
elif [ -e "$ROOT" ] && [ -n "$(ls -A "$ROOT")" ]; then
  echo "--root $ROOT exists and is not empty" >&2; exit 2
fi
ROOT=$(mkdir -p "$ROOT" && cd "$ROOT" && pwd)
WORK=$(mktemp -d /tmp/vdr-slim-work.XXXXXX)   # the test PDFs, made on the host
TIMES=()

cleanup() {
  local rc=$?
  rm -rf "$WORK"
  if [ "$rc" != 0 ]; then
    echo; echo "==== FAILED (exit $rc); steps done:"; printf '%s\n' "${TIMES[@]}"
  fi
  # Mounts live only in the private namespaces of in_root; never delete through a mount point.
  if findmnt -rn -o TARGET | grep -q "^$ROOT/"; then
    echo "!! something is still mounted under $ROOT: not deleting it" >&2
  elif [ "$KEEP" = 1 ]; then
    echo "kept the root: $ROOT  (chroot $ROOT su - user)"
  else
    rm -rf --one-file-system "$ROOT" && echo "deleted the root $ROOT"
  fi
  exit $rc
}
trap cleanup EXIT

step() {  # step "name" command...: run it, time it, stop on failure
  local name=$1; shift
  echo; echo "==== $name"
  local start=$SECONDS
  "$@"
  TIMES+=("$(printf '%5ds  %s' $((SECONDS - start)) "$name")")
}

# Run a command inside the root in a private mount namespace (its mounts vanish with it):
# in_root [--user] [--offline] [--wheels] -- command... (--wheels: mount $WHEELS read-only on /wheels)
in_root() {
  local user=0 net=() wheels=""
  while [ "$1" != -- ]; do
    case "$1" in
      --user) user=1 ;; --wheels) wheels=$WHEELS ;;
      --offline) unshare --net true 2>/dev/null && net=(--net) ;;
    esac
    shift
  done
  shift
  unshare --mount --propagation private "${net[@]}" -- /bin/bash -euc '
    root=$1 user=$2 wheels=$3; shift 3
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --rbind /sys "$root/sys"
    if [ -n "$wheels" ]; then mkdir -p "$root/wheels"; mount --bind -o ro "$wheels" "$root/wheels"; fi
    ip link set lo up 2>/dev/null || true   # in a new network namespace: loopback only
    if [ "$user" = 1 ]; then
      # The image environment (Dockerfile ENV), nothing from the host; the venv comes first on PATH.
      exec chroot --userspec=1000:1000 "$root" /usr/bin/env -i HOME=/home/user USER=user LANG=C.UTF-8 \
        PATH=/home/user/venv/bin:/home/user/.local/bin:/usr/local/bin:/usr/bin:/bin \
        PIP_CERT=/etc/ssl/certs/ca-certificates.crt PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 GRADIO_ANALYTICS_ENABLED=False \
        VDR_DATA_DIR=/data/vdr HF_HOME=/data/huggingface HF_HUB_OFFLINE=1 \
        /bin/bash -euc "cd /home/user/app; $*"
    fi
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 /bin/bash -euc "$*"
  ' in_root "$ROOT" "$user" "$wheels" "$@"
}

base_root() {
  command -v mmdebstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap; }
  echo "apt sources: $SOURCES"
  # The dpkg filters are debian:bookworm-slim's (the base of python:3.11-slim): no docs, man pages
  # or translations. Recommends are not installed (mmdebstrap's default, like --no-install-recommends).
  mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates,poppler-utils \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/groff/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$ROOT" "$SOURCES"
  in_root -- 'python3 --version; pdftoppm -v 2>&1 | head -1; echo "$(dpkg-query -f "\${binary:Package}\n" -W | wc -l) Debian packages"'
}

app_files() {
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  # A host behind a TLS-inspecting proxy trusts its CA through /usr/local/share/ca-certificates:
  # the root gets the same certificates (pip is pointed at the system bundle by PIP_CERT below).
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
    echo "host CA certificates added: $(cd /usr/local/share/ca-certificates && echo *.crt)"
    in_root -- 'update-ca-certificates 2>&1 | tail -1'
  fi
  in_root -- 'useradd -m -u 1000 user && mkdir -p /data /home/user/app /home/user/pdfs && chown user:user /data /home/user/app /home/user/pdfs'
  # Tracked files as they are now: `git stash create` is a commit of the uncommitted edits (none: HEAD).
  local tree; tree=$(git -C "$REPO" stash create); tree=${tree:-HEAD}
  echo "copying the tracked files of $(git -C "$REPO" rev-parse --short HEAD)$([ "$tree" = HEAD ] || echo ' + uncommitted edits')"
  git -C "$REPO" archive --format=tar "$tree" | tar -x -C "$ROOT/home/user/app"
  # The test PDFs, made on the host (the tests make them the same way; reportlab is a dev package).
  (cd "$REPO" && "$HOST_PYTHON" -c "import sys; from pathlib import Path; from tests.documents import write_sample_documents; write_sample_documents(Path(sys.argv[1]))" "$WORK")
  cp "$WORK/pdfs/scan.pdf" "$WORK/pdfs/report.pdf" "$ROOT/home/user/pdfs/"
  [ -z "$REAL_SCAN" ] || cp "$REAL_SCAN" "$ROOT/home/user/pdfs/"
  chown -R 1000:1000 "$ROOT/home/user"
  ls -l "$ROOT/home/user/pdfs"
}

torch_step() {
  in_root --user --wheels -- "
    python3 -m venv /home/user/venv
    echo 'the Dockerfile step: the PyTorch CPU index $TORCH_INDEX'
    if ! pip install -q --no-deps --timeout 15 --retries 1 --index-url '$TORCH_INDEX' -c constraints.txt torch torchvision; then
      echo 'the PyTorch CPU index cannot be used: torch from PyPI${WHEELS:+ and the local wheels (/wheels = $WHEELS)}'
      pip install -q --no-deps ${WHEELS:+--find-links /wheels} -c constraints.txt torch torchvision
    fi
    pip list 2>/dev/null | grep -E '^torch(vision)? '"
}

requirements_step() {
  in_root --user -- 'pip install -q -r requirements.txt && pip check && echo "$(pip list 2>/dev/null | tail -n +3 | wc -l) packages in the venv"'
}

no_libgl() {
  in_root --user -- '
    gl=$(/sbin/ldconfig -p | grep -i libgl | grep -vi libglib || true)
    echo "ldconfig -p | grep -i libgl (libglib aside): ${gl:-nothing}"
    files=$(find / -xdev \( -name "libGL*.so*" -o -name "libEGL*.so*" -o -name "libOpenGL*.so*" \) 2>/dev/null || true)
    echo "libGL/libEGL/libOpenGL files anywhere in the root: ${files:-none}"
    echo "X11 client libraries (poppler-utils -> libcairo2 pulls them, as in python:3.11-slim + poppler-utils): $(/sbin/ldconfig -p | grep -c "libX11\.so") libX11"
    so=$(python -c "import cv2, glob, os; print(*glob.glob(os.path.join(os.path.dirname(cv2.__file__), \"**\", \"cv2*.so\"), recursive=True))")
    echo "ldd $so:"; ldd $so | sed "s/^/    /"
    ort=$(python -c "import onnxruntime, glob, os; print(*glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), \"capi\", \"onnxruntime_pybind11_state*.so\")))")
    bad=$(ldd $so $ort | grep -iE "libGL|not found" || true)
    echo "libGL or missing libraries in the ldd of cv2 and onnxruntime: ${bad:-none}"
    [ -z "$gl$files$bad" ]'
}

smoke() {
  local real=""; [ -z "$REAL_SCAN" ] || real="--real-scan /home/user/pdfs/$(basename "$REAL_SCAN")"
  unshare --net true 2>/dev/null && echo "no network inside (unshare --net), HF_HUB_OFFLINE=1" || echo "with network, HF_HUB_OFFLINE=1"
  in_root --user --offline -- "python scripts/slim_smoke.py --pdfs /home/user/pdfs $real"
}

sizes() {
  in_root -- '
    echo "venv (site-packages and the interpreter links): $(du -sh /home/user/venv | cut -f1)"
    echo "largest packages in the venv:"
    du -s /home/user/venv/lib/python3.11/site-packages/* | sort -rn | head -8 | while read -r kb path; do printf "    %6d MB  %s\n" $((kb / 1024)) "${path##*/}"; done
    echo "app files: $(du -sh /home/user/app | cut -f1); smoke store and data: $(du -sh /data | cut -f1)"
    echo "root without the venv, app and data (the Debian part): $(du -sh --exclude=/home/user/venv --exclude=/home/user/app --exclude=/data -x / | cut -f1)"
    rmdir /wheels 2>/dev/null || true'
  echo "the whole root: $(du -sh -x "$ROOT" | cut -f1)  ($ROOT)"
}

echo "slim image smoke test: repo $REPO, root $ROOT, $(date -u +%FT%TZ)"
step "1. base root (mmdebstrap minbase + python3, python3-venv, ca-certificates, poppler-utils)" base_root
step "2. user 1000, /data, the app's tracked files, the test PDFs" app_files
step "3. torch + torchvision (Dockerfile: PyTorch CPU index, else fallback)" torch_step
step "4. pip install -r requirements.txt (constraints.txt)" requirements_step
step "5. no libGL" no_libgl
step "6. smoke test as user 1000 (text-layout-minilm, OCR, search, delete, CLI)" smoke
step "7. installed size" sizes
echo; echo "==== step timings"
printf '%s\n' "${TIMES[@]}"
echo "total ${SECONDS}s; all steps passed"
