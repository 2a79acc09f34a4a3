#!/usr/bin/env bash
# The device check, one prepared script for a lent GPU machine (under 8 minutes on one H100):
#   bash benchmarks/gpu_suite.sh            results under $OUT (default ./gpu_suite_out)
# 1. make test-gpu: the CUDA tests (bf16 training, the adapter on CUDA, DeepSpeed ZeRO-2/3 of LTX-shaped blocks
#    with Muon, the base stage on the 2B/13B block shapes; ring/hybrid sequence parallelism, which need 2 and 4
#    GPUs and skip with the reason on fewer);
# 2. benchmarks/gpu_throughput.py: base stage, stage 1 and stage 2 at 121x512x768 with as many of the 13B
#    config's 48 blocks as fit (tokens/s, MFU, peak memory), for a rising number of blocks until one fails;
# 3. environment: GPU, driver, torch/CUDA versions.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_suite_out}
mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONUNBUFFERED=1
start=$(date +%s)
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'devices', torch.cuda.device_count())"
} > "$OUT/environment.txt" 2>&1
timeout 300 "$PY" -m pytest -m gpu -q -rs tests/gpu > "$OUT/test_gpu.log" 2>&1
echo "test-gpu exit $? ($(( $(date +%s) - start ))s)" | tee -a "$OUT/summary.txt"
for layers in 4 8 16; do
  timeout 100 "$PY" benchmarks/gpu_throughput.py --layers "$layers" --steps 5 --warmup 2 \
    > "$OUT/throughput_${layers}layers.json" 2> "$OUT/throughput_${layers}layers.err"
  status=$?
  echo "gpu_throughput --layers $layers exit $status ($(( $(date +%s) - start ))s)" | tee -a "$OUT/summary.txt"
  [ "$status" -eq 0 ] || break
done
echo "done in $(( $(date +%s) - start ))s" | tee -a "$OUT/summary.txt"
