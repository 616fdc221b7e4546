#!/usr/bin/env bash
# The GPU benchmark run, prepared to go in ONE call on a lent GPU machine (no network there):
#   bash benchmarks/run_gpu.sh            # results under ${OUT:-benchmarks/out}
# Python: the machine's python3 (it has torch, lightning, tifffile, xarray...) plus the missing
# packages as wheels in .whl/ (made by benchmarks/prepare_gpu_carry.sh), installed to /tmp/site.
# BSD images: ${BSD_DIR:-.gpu_data/bsd}/{train400,set12} (copied there before the call), or shared/data/bsd.
# Phases (each under its own timeout, so one failing leaves the others' results), in this order:
#   1. train:   jumpdenoise's training pipeline vs CAREamist.train, patches/s and validation loss at equal
#               steps, bf16-mixed, 3 seeds; variants isolate the GPU-only differences (fused Adam, CUDA graphs,
#               memory format) for the validation-loss gap;
#   2. train32: the same in fp32 (32-true): whether bf16 carries the gap (on the CPU, in fp32, there is none);
#   3. predict: the engine alone in many modes (network variants, autotune, compile), then jumpdenoise predict
#               plate in/out (fp32, bf16, the best mode streamed and one unit at a time, the fastest
#               engine mode) vs CAREamist.predict; 256 fields (64 wells of 4): the per-plate work weighs
#               less than on 128, closer to a whole plate;
#   4. bsd:     benchmarks/run_gpu_bsd.sh: the budget schedule for BSD_MINUTES (8) on Train400, Set12 PSNR/SSIM
#               with and without TTA, the model exported (opt-in, alone: PHASES=bsd, under 10 minutes).
# Before them, "cudatests": the unit tests that only run on a GPU (CUDA graphs, device pipeline).
# SMOKE=1 runs the same phases with tiny CPU settings (a dry run on any machine).
# PHASES="predict train" picks phases; PRED_MODES, TRAIN_VARIANTS, TRAIN32_VARIANTS (benchmarks/train.py --variants)
# and BSD_MINUTES change what they measure.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/out}
mkdir -p "$out"
py=${PYTHON:-python3}
if ! $py -c "import careamics, zarr, dask" 2>/dev/null; then
  if [ -d .whl ]; then
    site=${SITE:-/tmp/site}
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl \
      || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  elif [ -x .venv/bin/python ]; then
    py=.venv/bin/python
  else
    python3 -m venv .venv && .venv/bin/python -m pip install -q -e . && py=.venv/bin/python
  fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ "${SMOKE:-0}" = 1 ]; then
  dev=cpu; pred=(--fields 8 --size 256 --modes fp32+wpu1,fp32+perunit+wpu1 --engine-modes fp32,fp32+split,fp32+cl --best-engine 1
                 --careamics-fields 2)
  train=(--precision 32-true --workers 1 --steps 3 --repeats 1 --wells 3 --fields 1 --size 512 --data-batches 3
         --variants ${TRAIN_VARIANTS:-default})
  t_pred=400 t_train=300 t_train32=300
else
  dev=cuda; pred=(--fields ${PRED_FIELDS:-256} --modes ${PRED_MODES:-fp32,bf16,bf16+split+autotune+compile,bf16+split+autotune+compile+perunit} --careamics-fields 32
                  --engine-modes ${ENGINE_MODES:-fp32,fp32+nographs,bf16,bf16+nographs,bf16+grouped,bf16+split+autotune,bf16+split+autotune+nographs,bf16+split+autotune+compile}
                  --best-engine ${BEST_ENGINE:-1})
  # repeats use training seeds 1, 2, 3 on both sides: the validation losses' spread over seeds
  train=(--precision bf16-mixed --workers 8 --steps ${TRAIN_STEPS:-300} --warmup 20 --repeats ${TRAIN_REPEATS:-3} --wells 10 --fields 4
         --json "$out/train.json"
         --variants ${TRAIN_VARIANTS:-default,unfused,no-graphs+unfused+channels_first})
  t_pred=${T_PRED:-150} t_train=${T_TRAIN:-220} t_train32=${T_TRAIN32:-120}  # all phases: under 10 min
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
fi
$py -c "import jumpdenoise, careamics, torch; print('jumpdenoise', jumpdenoise.__version__, 'careamics',
careamics.__version__, 'torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee "$out/env.txt"
phases=${PHASES:-cudatests train train32 predict}
t0=$SECONDS
# the CUDA-only tests (skipped on CPU machines): graphed training step, device pipeline
[[ " $phases " == *" cudatests "* ]] && { timeout ${T_TESTS:-60} $py -m pytest -q -p no:cacheprovider \
  tests/unit/test_train_graphs.py tests/unit/test_predict_pipeline.py tests/unit/test_gpu_fast.py \
  tests/unit/test_predict_graphs.py > "$out/cudatests.txt" 2>&1 \
  || echo "cuda tests failed or timed out (rc $?)" | tee -a "$out/cudatests.txt"; tail -3 "$out/cudatests.txt"; }
echo "cudatests phase: $((SECONDS - t0)) s"; t0=$SECONDS
[[ " $phases " == *" train "* ]] && { timeout $t_train $py benchmarks/train.py --device $dev "${train[@]}" \
  > "$out/train.txt" 2>&1 || echo "train benchmark failed or timed out (rc $?)" | tee -a "$out/train.txt"; }
echo "train phase: $((SECONDS - t0)) s"; t0=$SECONDS
[[ " $phases " == *" train32 "* ]] && { timeout $t_train32 $py benchmarks/train.py --device $dev "${train[@]}" \
  --precision 32-true --variants ${TRAIN32_VARIANTS:-default,unfused} --json "$out/train32.json" \
  > "$out/train32.txt" 2>&1 || echo "train32 benchmark failed or timed out (rc $?)" | tee -a "$out/train32.txt"; }
echo "train32 phase: $((SECONDS - t0)) s"; t0=$SECONDS
[[ " $phases " == *" predict "* ]] && { timeout $t_pred $py benchmarks/predict.py --device $dev "${pred[@]}" --engine-only --json "$out/predict.json" \
  > "$out/predict.txt" 2>&1 || echo "predict benchmark failed or timed out (rc $?)" | tee -a "$out/predict.txt"; }
echo "predict phase: $((SECONDS - t0)) s"; t0=$SECONDS
[[ " $phases " == *" bsd "* ]] && { PY=$py OUT=$out SETUP_S=$SECONDS BSD_DIR=${BSD_DIR:-} bash benchmarks/run_gpu_bsd.sh \
  || echo "bsd phase failed (rc $?)"; }
echo "bsd phase: $((SECONDS - t0)) s"
for f in $phases; do [ -f "$out/$f.txt" ] || continue; echo "=== $f"; grep -E "Mpx-ch/s|ratio|patches/s|bf16 vs|mean PSNR|failed|FAILED|passed|Error|error|val_loss|\| |^jumpdenoise \[|^CAREamist.train " "$out/$f.txt" | grep -v "^{" | tail -40; done
