#!/usr/bin/env bash
# The lab's GPT (preset `lab`: 6 layers, 6 heads, d = 384, block 256, 10.8 M parameters) on a CUDA GPU in
# bf16 with torch.compile, for a fixed few minutes: prints tokens/s and the validation loss, then the
# generation speed with and without the KV cache and the loss on the corpus's validation split.
# Run from the repository root:  bash benchmarks/gpu_gpt.sh [MINUTES] [RESULTS_DIR]
# Needs torch with CUDA and a C++ compiler (torch.compile), labformer importable (installed, or
# PYTHONPATH=.); Tiny Shakespeare from $LABFORMER_SHAKESPEARE, ../shared/data or the download cache.
set -euo pipefail
if [ -z "${LABFORMER_SHAKESPEARE:-}" ] && [ -f ../shared/data/tinyshakespeare.txt ]; then
  export LABFORMER_SHAKESPEARE=$PWD/../shared/data/tinyshakespeare.txt
fi
minutes=${1:-4}
results=${2:-gpu-results}
python=${PYTHON:-python3}
mkdir -p "$results"
run=$(mktemp -d)/gpt-lab
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$python -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name())'
# The schedule follows the clock (--time-limit): the cosine ends when the minutes are up.
$python -m labformer train gpt --preset lab --device cuda --amp bf16 --compile --no-progress \
  --time-limit "$((minutes * 60))" --out "$run" 2>&1 | tail -n 3
cp "$run/metrics.json" "$results/gpt-lab.json"
$python -m labformer evaluate "$run" --device cuda | tee "$results/gpt-lab-evaluate.txt"
$python - "$run" <<'PY' | tee "$results/gpt-lab-generation.txt"
import sys, time, torch
import labformer
model = labformer.load(sys.argv[1], device="cuda")
prompt = torch.zeros(1, 1, dtype=torch.long, device="cuda")
for use_cache in (True, False):
    model.generate(prompt, 20, use_cache=use_cache)  # warm-up
    torch.cuda.synchronize()
    started = time.perf_counter()
    model.generate(prompt, 500, use_cache=use_cache, generator=torch.Generator("cuda").manual_seed(0))
    torch.cuda.synchronize()
    print(f"generation {'with' if use_cache else 'without'} the KV cache: {500 / (time.perf_counter() - started):,.0f} tokens/s")
PY
$python -c "import json; m = json.load(open('$results/gpt-lab.json')); print(f\"val loss {m['val_loss']:.3f} after {m['iters']} steps, {m['tokens_per_second']:,.0f} tokens/s, {m['device']}, {m['amp']}\")"
