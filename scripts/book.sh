#!/usr/bin/env bash
# Set up everything on a fresh machine, then build the book from the executed notebooks
# into _build/html. With --execute, run every notebook first (about 2.5 minutes with the toy
# models cached, about 19 on a fresh machine, where three of them train).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "--execute" ]; then
  bash scripts/execute_notebooks.sh
fi
bash scripts/build_book.sh
echo "The book is in _build/html/index.html"
