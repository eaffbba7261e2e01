#!/usr/bin/env bash
# Build the book into _build/html from the outputs committed in notebooks/*.ipynb (nothing
# is executed and nothing is downloaded); any Sphinx warning fails the build.
# Extra arguments go to `jupyter-book build`, e.g. --path-output /tmp/book.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/jupyter-book build . --warningiserror --keep-going --all "$@"
