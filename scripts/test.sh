#!/usr/bin/env bash
# Set up everything on a fresh machine, then run the package's tests: lint, unit and
# integration (models, data, training, CLI, checkpoints, two-process DDP).
# The book's own checks (nbval, pair sync, the site in Chromium) are scripts/test_book.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check cagnet tests benchmarks scripts notebooks/*.py
.venv/bin/python -m pytest tests --ignore=tests/test_site.py --ignore=tests/test_notebooks.py \
  -p no:cacheprovider "$@"
