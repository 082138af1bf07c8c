#!/usr/bin/env bash
# Install what the tests need: the app's set-up plus chromium (browser tests), the fonts the OCR tests
# draw with, and dev packages.
set -euo pipefail
cd "$(dirname "$0")/.."
WITH_BROWSER=1 WITH_TEST_FONTS=1 REQUIREMENTS=requirements-dev.txt ./scripts/setup.sh
