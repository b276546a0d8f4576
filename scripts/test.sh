#!/usr/bin/env bash
# Install the project with its dev tools into .venv and run the whole test suite (CPU only).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
export VAESEARCH_DATA_DIR="${VAESEARCH_DATA_DIR:-$(cd .. && pwd)/shared/mnist}"
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
