#!/usr/bin/env bash
# The book's checks: notebook pairs and outputs, every notebook under nbval, and the built
# site opened page by page in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
.venv/bin/python -m pytest tests/test_notebooks.py tests/test_site.py notebooks --nbval-lax \
  -p no:cacheprovider "$@"
