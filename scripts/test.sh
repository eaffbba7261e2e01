#!/usr/bin/env bash
# Set up everything on a fresh machine (with Chromium), then run every test: lint; unit and
# integration tests of the package (models, data, training, CLI, checkpoints, two-process
# DDP); the notebooks' pairs and outputs; every notebook under nbval; and the built book
# opened page by page in headless Chromium. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --browser
.venv/bin/ruff check cagnet tests benchmarks scripts notebooks/*.py
.venv/bin/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider --durations=20 "$@"
