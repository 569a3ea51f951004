#!/usr/bin/env bash
# The CUDA figures in one command, on one CUDA GPU (about 5 minutes on an H100/H200; the step limits add up
# to 7 min 45 s):
#
#     bash benchmarks/gpu_check.sh            # writes benchmarks/results/*_cuda.csv
#     bash benchmarks/gpu_check.sh --smoke    # every step on the CPU at toy sizes, into a temporary dir
#
# Steps, each under its own time limit (a failed or timed-out step is recorded and the next one runs):
#   1. the gpu-marked tests: every static policy under torch.cuda.set_sync_debug_mode("error") (no host
#      sync), and CUDA batches equal to the CPU ones for the same draws            -> gpu_tests_cuda.csv
#   2. epoch_speed: CIFAR-100 R-18 at batch 100 on CIFAR-shaped synthetic data, bf16, channels_last,
#      device-resident loader; torch.compile of the step off, then on (target <= 2.5 s/epoch)
#                                                                                   -> epoch_speed_cuda.csv
#   3. step_speed on r18 and deit_s (targets: puzzlemix <= 1.6x none, AutoMix <= 2.2x time and <= 1.6x
#      memory, attention policies <= 1.1x, static policies <= 1.02x)
#                                                         -> step_speed_r18_cuda.csv, step_speed_deit_s_cuda.csv
#   4. mix_speed on CUDA (each call under set_sync_debug_mode("error"))               -> mix_speed_cuda.csv
# gpu_check_cuda.csv lists every step with its exit status, seconds and the GPU's name; each step's output
# is kept next to it as <step>.log.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" WANDB_MODE=disabled
PY=${PYTHON:-python}

if [ "${1:-}" = "--smoke" ]; then
  SMOKE=1 DEVICE=cpu OUT=$(mktemp -d) SCALE=6  # CPUs are slower: longer limits
elif [ -z "${1:-}" ]; then
  SMOKE=0 DEVICE=cuda OUT=benchmarks/results SCALE=1
  if ! $PY -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check.sh: no CUDA device (or no torch) for $PY (bash benchmarks/gpu_check.sh --smoke checks the steps on the CPU)" >&2
    exit 2
  fi
else
  echo "gpu_check.sh: unknown argument '$1' (expected nothing or --smoke)" >&2
  exit 2
fi
GPU=$($PY -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')" 2>/dev/null || echo unknown)
mkdir -p "$OUT"
SUMMARY="$OUT/gpu_check_cuda.csv"
echo "step,status,seconds,gpu" > "$SUMMARY"
rm -f "$OUT/epoch_speed_cuda.csv"  # epoch_speed appends; this run's rows only
FAILED=0

# step NAME LIMIT_S COMMAND...: run it with its output in $OUT/NAME.log and one summary row
step() {
  local name=$1 limit=$(( $2 * SCALE )) t0 rc
  shift 2
  t0=$(date +%s)
  echo "== $name (limit ${limit} s): $*"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name,$rc,$(( $(date +%s) - t0 )),\"$GPU\"" >> "$SUMMARY"
  tail -n 3 "$OUT/$name.log"
  [ "$rc" = 0 ] || FAILED=1
}

if [ $SMOKE = 1 ]; then
  EPOCH_OVR=(+data.params.val_size=100) EPOCH=(--epochs 1 --train-size 200)
  STEP=(--batch 2 --steps 1 --warmup 1)
  MIX=(--batch 4 --size 32 --reps 1)
else
  EPOCH_OVR=() EPOCH=(--epochs 3)
  STEP=(--batch 100 --steps 20 --warmup 5)
  MIX=(--reps 15)
fi
STATIC=cutmix,fmix,gridmix,resizemix,saliencymix,smoothmix,maskmix
CNN=none,mixup,$STATIC,puzzlemix,attentivemix,snapmix,alignmix,comixup,automix,samix,adautomix,adamixup
VIT=none,mixup,cutmix,transmix,tokenmix,tokenmix_mixed,mixpro,smmix

step gpu_tests 90 $PY -m pytest -m gpu -q -p no:cacheprovider --junitxml="$OUT/gpu_tests.xml" tests/test_cuda_sync.py
$PY - "$OUT/gpu_tests.xml" "$OUT/gpu_tests_cuda.csv" "$GPU" <<'EOF'
import csv, sys, xml.etree.ElementTree as ET
src, dst, gpu = sys.argv[1:]
try:
    cases = ET.parse(src).getroot().iter("testcase")
except (OSError, ET.ParseError) as exc:
    sys.exit(f"gpu_check.sh: no test report ({exc})")
with open(dst, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["test", "outcome", "seconds", "gpu"])
    for c in cases:
        kinds = {child.tag for child in c}
        outcome = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
        w.writerow([f"{c.get('classname')}::{c.get('name')}", outcome, c.get("time"), gpu])
EOF

for compile in false true; do
  step "epoch_speed_compile_$compile" $([ $compile = true ] && echo 120 || echo 75) $PY benchmarks/epoch_speed.py configs/cifar100/r18/mixup.yaml \
    data.batch_size=100 "runtime.compile=$compile" "${EPOCH_OVR[@]}" "${EPOCH[@]}" --amp bf16 --channels-last --resident device \
    --csv "$OUT/epoch_speed_cuda.csv"
done
step step_speed_r18 90 $PY benchmarks/step_speed.py --device $DEVICE --model r18 "${STEP[@]}" --policies $CNN \
  --csv "$OUT/step_speed_r18_cuda.csv"
step step_speed_deit_s 75 $PY benchmarks/step_speed.py --device $DEVICE --model deit_s "${STEP[@]}" --policies $VIT \
  --csv "$OUT/step_speed_deit_s_cuda.csv"
step mix_speed 45 $PY benchmarks/mix_speed.py --device $DEVICE "${MIX[@]}" --out "$OUT/mix_speed_cuda.csv"

echo "== summary ($SUMMARY)"
cat "$SUMMARY"
exit $FAILED
