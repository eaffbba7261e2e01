#!/usr/bin/env bash
# Set up everything on a fresh machine: a virtual environment in .venv with the package,
# its test and book extras, and (with --browser) Debian's Chromium and chromedriver for
# the site tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt torch torchvision
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev,book]"
# MathJax for the book, served from the site itself (no CDN): npm's mathjax package, its
# es5 bundle copied to _static/mathjax, which _config.yml's mathjax_path points at
if [ ! -f _static/mathjax/tex-chtml.js ]; then
  if command -v npm >/dev/null 2>&1; then
    npm install --silent --no-save --no-audit --no-fund --prefix .venv/npm mathjax@3.2.2 >/dev/null
    mkdir -p _static
    rm -rf _static/mathjax
    cp -r .venv/npm/node_modules/mathjax/es5 _static/mathjax
  else
    echo "note: install Node.js and npm to serve formulas offline (MathJax)" >&2
  fi
fi
if [ "${1:-}" = "--browser" ] && ! { command -v chromium && command -v chromedriver; } >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq chromium chromium-driver) >/dev/null
  else
    echo "note: install Chromium and chromedriver to run the browser tests" >&2
  fi
fi
