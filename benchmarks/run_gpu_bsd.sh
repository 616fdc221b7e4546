#!/usr/bin/env bash
# The BSD protocol under a fixed budget, in ONE device call of under 10 minutes including set-up:
#   bash benchmarks/run_gpu_bsd.sh          # results under ${OUT:-benchmarks/out}
# 1. `jumpdenoise bsd --schedule budget --max-minutes ${BSD_MINUTES:-8}` on Train400 (sigma 25, noise
#    seed 0), scored on Set12 (noise seed 1), exported to bsd_model.zip (BioImage Model Zoo);
# 2. the exported zip rescored on Set12 with `--model` (checks the export) and with 8-fold TTA.
# Files written (at most 8 come back from a device call, two folders deep at most):
#   bsd.txt (log), bsd_scores.csv, bsd_scores_tta.csv, curves.csv (training curve), bsd_model.zip,
#   bsd_result.json (summaries with and without TTA, wall times, GPU, versions).
# Python: the caller's $PY (run_gpu.sh sets it up), else python3. Data: the first of $BSD_DIR,
# shared/data/bsd, ../shared/data/bsd, .gpu_data/bsd (benchmarks/prepare_gpu_carry.sh copies the
# images there: ../shared beside the checkout does not travel to a device machine).
# CALL_LIMIT_S (default 595) bounds the whole call, SETUP_S (seconds a caller already spent) included:
# when set-up took longer than planned, the training budget shrinks so that start-up, scoring and
# export still fit (BSD_RESERVE_S, 90 s), and bsd.txt / bsd_result.json say so.
# The device call (after benchmarks/prepare_gpu_carry.sh here): command `PHASES=bsd bash benchmarks/run_gpu.sh`,
# carry [".whl", ".gpu_data"], timeout_s 600; copy the returned files to benchmarks/results/<run>/.
# SMOKE=1: a dry run on any machine (CPU, 0.2 minutes, a few images).
set -uo pipefail
cd "$(dirname "$0")/.."
start=$((SECONDS - ${SETUP_S:-0}))  # SETUP_S: seconds the caller spent before this script
out=${OUT:-benchmarks/out}
mkdir -p "$out"
py=${PY:-python3}
export PYTHONUNBUFFERED=1
bsd=""
for d in ${BSD_DIR:-} shared/data/bsd ../shared/data/bsd .gpu_data/bsd; do
  [ -d "$d/train400" ] && [ -d "$d/set12" ] && { bsd=$d; break; }
done
if [ -z "$bsd" ]; then
  echo "no BSD images (train400/, set12/) under \$BSD_DIR, shared/data/bsd, ../shared/data/bsd or .gpu_data/bsd" \
    | tee "$out/bsd.txt"
  exit 1
fi
if [ "${SMOKE:-0}" = 1 ]; then
  minutes=${BSD_MINUTES:-0.2}; dev=cpu; extra=(--n-train 8 --patch-size 32 --batch-size 4); sets=(--n-test 2)
else
  minutes=${BSD_MINUTES:-8}; dev=cuda; extra=(); sets=()
fi
limit=${CALL_LIMIT_S:-595}
reserve=${BSD_RESERVE_S:-90}  # start-up before the clock starts; after it: Set12, export, two rescorings
elapsed=$((SECONDS - start))
fit=$("$py" -c "print(round(min($minutes, ($limit - $elapsed - $reserve) / 60), 2))")
if "$py" -c "import sys; sys.exit(not $fit < $minutes)"; then
  echo "set-up took $elapsed s: training budget cut from $minutes to $fit min to end within $limit s" \
    | tee -a "$out/bsd.txt"
  minutes=$fit
fi
work=$(mktemp -d /tmp/jd-bsd-XXXX)
status=0
t_setup=$elapsed
echo "data: $bsd; training budget $minutes min on $dev; set-up $t_setup s" | tee -a "$out/bsd.txt"
t0=$SECONDS
"$py" -m jumpdenoise bsd --train "$bsd/train400" --test "$bsd/set12" --sigma 25 --seed 0 --schedule budget \
  --max-minutes "$minutes" --device $dev "${extra[@]}" "${sets[@]}" --out "$work/run" --export "$out/bsd_model.zip" \
  >> "$out/bsd.txt" 2>&1 || { status=$?; echo "bsd training run failed (rc $status)" | tee -a "$out/bsd.txt"; }
t_train=$((SECONDS - t0)); t0=$SECONDS
cp "$work/run/bsd_scores.csv" "$out/bsd_scores.csv" 2>/dev/null
cp "$work/run/model/curves.csv" "$out/curves.csv" 2>/dev/null
for mode in plain tta; do
  [ -f "$out/bsd_model.zip" ] || break
  flag=(); [ $mode = tta ] && flag=(--tta)
  "$py" -m jumpdenoise bsd --model "$out/bsd_model.zip" --test "$bsd/set12" --sigma 25 --seed 0 --device $dev \
    "${sets[@]}" "${flag[@]}" --out "$work/zip_$mode" >> "$out/bsd.txt" 2>&1 \
    || echo "rescoring ($mode) failed (rc $?)" | tee -a "$out/bsd.txt"
done
cp "$work/zip_tta/bsd_scores.csv" "$out/bsd_scores_tta.csv" 2>/dev/null
t_score=$((SECONDS - t0))
"$py" - "$work" "$out" "$t_setup" "$t_train" "$t_score" "$minutes" <<'PY' | tee -a "$out/bsd.txt"
import json, os, sys
from pathlib import Path
work, out, t_setup, t_train, t_score, minutes = Path(sys.argv[1]), Path(sys.argv[2]), *map(float, sys.argv[3:])
read = lambda p: json.loads(p.read_text()) if p.is_file() else None
result = {"trained": read(work / "run" / "bsd_summary.json"), "zip": read(work / "zip_plain" / "bsd_summary.json"),
          "zip_tta": read(work / "zip_tta" / "bsd_summary.json"), "budget_minutes": minutes,
          "wall_seconds": {"setup": t_setup, "train_score_export": t_train, "rescore_zip_plain_and_tta": t_score},
          "model_zip_bytes": os.path.getsize(out / "bsd_model.zip") if (out / "bsd_model.zip").is_file() else None}
try:
    import careamics, torch
    result["versions"] = {"torch": torch.__version__, "careamics": careamics.__version__,
                          "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
except Exception as exc:  # the summary is written whatever fails
    result["versions"] = repr(exc)
(out / "bsd_result.json").write_text(json.dumps(result, indent=2))
for key in ("trained", "zip", "zip_tta"):
    s = result[key] or {}
    print(f"{key}: Set12 mean PSNR {s.get('mean_denoised_psnr', float('nan')):.2f} dB, "
          f"SSIM {s.get('mean_denoised_ssim', float('nan')):.3f}, epochs {s.get('epochs')}, "
          f"train {s.get('train_seconds', 0):.0f} s")
print(f"zip {result['model_zip_bytes']} bytes; wall: {result['wall_seconds']}")
PY
rm -rf "$work"
echo "bsd phase total: $((SECONDS - start)) s"
exit $status
