#!/usr/bin/env bash
# Set up everything on a fresh machine, then run every test: lint, unit, integration,
# the notebooks (nbval) and the built site in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
.venv/bin/ruff check cagnet tests benchmarks scripts notebooks/*.py
.venv/bin/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider "$@"
