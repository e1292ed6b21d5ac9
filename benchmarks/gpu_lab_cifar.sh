#!/usr/bin/env bash
# The lab's CIFAR-10 recipe (`lab-cifar`: RandAugment, crop and flip, 100 epochs) and the same recipe with
# crop and flip only, trained side by side on one CUDA GPU (two processes: the model is too small to fill
# it), in bf16 with torch.compile, the test set scored after every epoch (benchmarks/gpu_vit.py). The lab
# reports 79.35 %; the difference between the two runs is what RandAugment gives. About 10 minutes on an H200.
# Run from the repository root:  bash benchmarks/gpu_lab_cifar.sh [RESULTS_DIR] [DATA]
#   DATA: the CIFAR-10 JPEG folder or archive, default ../shared/data/cifar10-jpeg.tar.gz.
# Needs torch with CUDA and a C++ compiler (torch.compile), labformer importable (installed, or PYTHONPATH=.).
set -euo pipefail
results=${1:-gpu-results}
data=${2:-../shared/data/cifar10-jpeg.tar.gz}
python=${PYTHON:-python3}
mkdir -p "$results"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$results/gpu.txt"
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD/benchmarks"
$python benchmarks/gpu_vit.py --presets lab-cifar:folder --data-dir "$data" --amp bf16 --compile \
  --out "$results/lab-cifar.json" > "$results/lab-cifar.txt" 2>&1 &
with=$!
$python benchmarks/gpu_vit.py --presets lab-cifar:folder --data-dir "$data" --amp bf16 --compile \
  --set augment=crop_flip --out "$results/lab-cifar-crop-flip.json" > "$results/lab-cifar-crop-flip.txt" 2>&1 &
without=$!
status=0
wait $with || status=$?
wait $without || status=$?
tail -n 4 "$results/lab-cifar.txt" "$results/lab-cifar-crop-flip.txt"
exit $status
