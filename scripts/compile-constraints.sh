#!/usr/bin/env bash
# Regenerate constraints.txt: the exact version of every package the app and its tests install
# (requirements-dev.txt, which includes requirements.txt), resolved together with what the Hugging
# Face Spaces builder adds on its own command line: gradio[oauth,mcp] at the README's sdk_version,
# and spaces. One set of pins then holds for setup.sh, the Dockerfile, CI and a Space.
#
#   ./scripts/compile-constraints.sh            keeps today's pins where they still fit
#   UPGRADE=1 ./scripts/compile-constraints.sh  takes the newest versions that fit
#
# uv comes from PATH, else from .venv (installed there with pip when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

# sdk_version from the Space card (the YAML header between the first two '---' lines of README.md).
sdk=$(awk 'NR == 1 && $0 != "---" { exit } NR > 1 && $0 == "---" { exit }
           /^sdk_version:/ { gsub(/["'\'' ]/, "", $2); print $2 }' README.md)
if [ -z "$sdk" ]; then
  echo "README.md has no sdk_version in its YAML header" >&2
  exit 1
fi

UV=${UV:-$(command -v uv || true)}
if [ -z "$UV" ]; then
  [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
  [ -x .venv/bin/uv ] || .venv/bin/pip install -q --disable-pip-version-check uv
  UV=.venv/bin/uv
fi

upgrade=()
[ "${UPGRADE:-0}" = 1 ] && upgrade=(--upgrade)
body=$(mktemp)
trap 'rm -f "$body"' EXIT
# The existing constraints.txt is read as the preferred versions: a rerun changes only what must change.
[ -f constraints.txt ] && cp constraints.txt "$body"
# "-": the builder's own packages, from stdin (they have no file in the repository).
printf 'gradio[oauth,mcp]==%s\nspaces\n' "$sdk" | "$UV" pip compile requirements-dev.txt - "${upgrade[@]}" \
  --universal --python-version 3.11 --no-header --annotation-style line \
  --index-url https://pypi.org/simple --quiet -o "$body"
{
  echo "# Exact versions of every package the app and its tests install: generated, do not edit."
  echo "# Resolved together with what the Spaces builder adds: gradio[oauth,mcp]==$sdk (README's"
  echo "# sdk_version) and spaces. Regenerate with ./scripts/compile-constraints.sh (docs/space.md)."
  echo "# Applied by scripts/setup.sh, the Dockerfile and CI via PIP_CONSTRAINT; requirements.txt does"
  echo "# not name it, because the Spaces builder installs requirements.txt without the rest of the repo."
  grep -v '^#' "$body"
} > constraints.txt
echo "constraints.txt: $(grep -c '==' constraints.txt) pins, gradio[oauth,mcp]==$sdk"
