#!/usr/bin/env bash
# Install the project with its dev tools into .venv and run the whole test suite (CPU only): the fast tier
# and the slow, cluster and browser tests (-m "" lifts the fast-tier filter of pyproject.toml's addopts).
# Arguments go to pytest after it, e.g. `bash scripts/test.sh tests/vae` or `bash scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
export VAESEARCH_DATA_DIR="${VAESEARCH_DATA_DIR:-$(cd .. && pwd)/shared/mnist}"
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -m "" "$@"
