#!/usr/bin/env bash
# Execute the notebooks in order, in place, so that the book can be built from their outputs,
# and keep each notebooks/NN_*.py twin (jupytext, py:percent) in sync with its .ipynb.
# The .py file is the one to edit: the newer of the pair wins the first sync.
#   bash scripts/execute_notebooks.sh                      # every notebook
#   bash scripts/execute_notebooks.sh notebooks/05_latent.py   # some of them
# Trained toy models are cached in $CAGNET_CACHE/book (default ~/.cache/cagnet/book); point
# CAGNET_CACHE at an empty folder to train everything from scratch. CELL_TIMEOUT: seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
CELL_TIMEOUT=${CELL_TIMEOUT:-1200}
if [ "$#" -gt 0 ]; then
  sources=("$@")
else
  sources=(notebooks/[0-9][0-9]_*.py)
fi
total_start=$(date +%s)
for src in "${sources[@]}"; do
  stem=${src%.*}
  .venv/bin/jupytext --quiet --set-formats ipynb,py:percent "$stem.py"
  .venv/bin/jupytext --quiet --sync "$stem.py"
  start=$(date +%s)
  PYTHONHASHSEED=0 .venv/bin/python - "$stem.ipynb" "$CELL_TIMEOUT" <<'PY'
import os
import sys

import nbformat
from nbclient import NotebookClient

path, timeout = sys.argv[1], int(sys.argv[2])
nb = nbformat.read(path, as_version=4)
client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                        resources={"metadata": {"path": os.path.dirname(path) or "."}})
client.execute()
nbformat.write(nb, path)
PY
  .venv/bin/jupytext --quiet --sync "$stem.ipynb"
  echo "$stem: $(( $(date +%s) - start )) s"
done
echo "all: $(( $(date +%s) - total_start )) s"
