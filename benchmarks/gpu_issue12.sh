#!/usr/bin/env bash
# Issue 12's GPU measurements in one run (~6 min on one H100/H200, each step capped, 570 s in all): results under $OUT.
#   OUT=/some/dir bash benchmarks/gpu_issue12.sh            # from the repository root
#   PY=python TINY=1 bash benchmarks/gpu_issue12.sh          # TINY=1: tiny shapes, a dry run
# 1. cuda_checks.py: varlen GQA equals the repeated-K/V dense mask; host syncs of one
#    training step (smoke model, Qwen2.5-Omni plugins at size=tiny) under sync debug mode.
# 2. thinker_step.py: omnitrain's Thinker vs transformers' Qwen2ForCausalLM, Qwen2.5-0.5B
#    shape, 4 x 4,096 tokens, bf16 autocast, fused AdamW (varlen; then per-block checkpointing;
#    then rows packed with 3-15 documents).
# 3. thinker_decode.py: ms per new token with the KV cache, 64 to 1,024 tokens of context.
# PART=2 (a second call, ~4 min): the zero-sync test under torch.cuda.set_sync_debug_mode("error")
# (tests/model/test_zero_sync.py, both plugin sets) and omni_step.py (omni05b_full's full omni step
# per slot, Qwen2.5-Omni plugins on the long demo profile, bf16-mixed; then Lightning vs a hand loop).
# Each step has its own time limit and log; a failing step does not stop the others.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_issue12}
PY=${PY:-python}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
if [ "${TINY:-0}" = 1 ]; then
  STEP="--preset tiny --steps 3 --warmup 2"; DECODE="--preset tiny --contexts 64,256 --new 4"
  OMNI="--size tiny --override trainer=cpu --steps 3 --warmup 2 --rounds 1"; LONG="--train 8 --val 4"
else
  STEP="--preset qwen05b --steps 8 --warmup 3"; DECODE="--preset qwen05b --contexts 64,128,256,512,1024 --new 32"
  OMNI="--size omni05b --steps 10 --warmup 3 --rounds 2"; LONG=""
fi
run() {  # name, limit in seconds, command...
  local name=$1 limit=$2; shift 2
  echo "== $name: $*" | tee -a "$OUT/summary.txt"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  grep -v "^\[\|Warning\|warn(" "$OUT/$name.log" | tail -n 15 | tee -a "$OUT/summary.txt"
  echo "-- $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  git log -1 --oneline 2>/dev/null || true; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if [ "${PART:-1}" = 2 ]; then
  run zero_sync 120 $PY -m pytest -q -p no:cacheprovider tests/model/test_zero_sync.py -rs
  $PY -m omnitrain data demo "$OUT/demo_long" --profile long $LONG > "$OUT/demo_long.log" 2>&1
  # omni05b_full on one GPU: strategy=auto, no accumulation (what omni_step compares)
  run omni_step 300 $PY benchmarks/omni_step.py --device "$DEVICE" --plugins qwen --recipe omni05b_full $OMNI \
    --override strategy=auto --override trainer.accumulate_grad_batches=1 --override trainer.precision=bf16-mixed \
    --override data=demo_long --data "$OUT/demo_long" --json "$OUT/omni_step.json"
  echo "results in $OUT (summary.txt, *.json, *.log)"
  exit 0
fi
run cuda_checks 120 $PY benchmarks/cuda_checks.py --device "$DEVICE" --json "$OUT/cuda_checks.json"
run thinker_step 150 $PY benchmarks/thinker_step.py $STEP --device "$DEVICE" --dtype bf16 --variants auto \
  --json "$OUT/thinker_step.json"
run thinker_step_ckpt 110 $PY benchmarks/thinker_step.py $STEP --device "$DEVICE" --dtype bf16 --variants ckpt \
  --json "$OUT/thinker_step_ckpt.json"
run thinker_step_packed 100 $PY benchmarks/thinker_step.py $STEP --device "$DEVICE" --dtype bf16 --variants packed \
  --json "$OUT/thinker_step_packed.json"
run thinker_decode 90 $PY benchmarks/thinker_decode.py $DECODE --device "$DEVICE" --dtype bf16 \
  --json "$OUT/thinker_decode.json"
echo "results in $OUT (summary.txt, *.json, *.log)"
