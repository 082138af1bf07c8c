#!/usr/bin/env bash
# Install what the tests need: the app's set-up plus chromium (browser tests) and dev packages.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_BROWSER=1 REQUIREMENTS=requirements-dev.txt ./scripts/setup.sh
