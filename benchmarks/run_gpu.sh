#!/usr/bin/env bash
# The GPU benchmark run, prepared to go in ONE call on a lent GPU machine (see README):
#   bash benchmarks/run_gpu.sh            # results under ${OUT:-benchmarks/out}
# Installs the package into .venv if needed, then runs the train and predict benchmarks
# (each prints ratios against CAREamics measured in the same run) and the BSD command on Set12
# when ../shared/data/bsd is present.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/out}
mkdir -p "$out"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q -e .
fi
py=.venv/bin/python
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
timeout 200 $py benchmarks/predict.py --device cuda --fields 64 --modes fp32,bf16,bf16+compile \
  --json "$out/predict.json" 2>&1 | tee "$out/predict.txt" || echo "predict benchmark failed or timed out"
timeout 200 $py benchmarks/train.py --device cuda --precision bf16-mixed --workers 8 --steps 200 \
  2>&1 | tee "$out/train.txt" || echo "train benchmark failed or timed out"
if [ -d ../shared/data/bsd/train400 ]; then
  timeout 150 .venv/bin/jumpdenoise bsd --train ../shared/data/bsd/train400 --test ../shared/data/bsd/set12 \
    --sigma 25 --schedule short --device cuda --out "$out/bsd" 2>&1 | tee "$out/bsd.txt" || echo "bsd run failed or timed out"
fi
