#!/bin/bash
# The probes of issue 15 as a user meets them (CPU, data/demo from `omnitrain data demo data/demo`): each prints a table row (exit status, the error line).
cd "$(dirname "$0")/.."
export DS_ACCELERATOR=cpu OMP_NUM_THREADS=2 TORCH_EXTENSIONS_DIR=$HOME/.cache/omnitrain/torch_extensions
W=/tmp/probes15; rm -rf $W; mkdir -p $W
D="recipe=smoke data.train_shards=data/demo/train-*.tar data.val_shards=data/demo/val-*.tar logger=csv"
probe() { local name="$1"; shift; timeout 120 "$@" >$W/out 2>&1; local rc=$?; echo "| $name | \`${*: -1}\` | $rc | $(grep -E 'error|Error|refus|stopp|skipp' $W/out | tail -1 | cut -c1-160) |"; }
T="${PYTHON:-.venv/bin/python} -m omnitrain train $D"
probe "lr=1e3" $T run_dir=$W/lr trainer.max_steps=10 optim.lr=1e3
: > $W/empty.tar
probe "empty shard only" $T run_dir=$W/empty data.train_shards=$W/empty.tar
$T run_dir=$W/old trainer.max_steps=2 >/dev/null 2>&1
probe "fresh run into old run_dir" $T run_dir=$W/old trainer.max_steps=2
for kv in data.batch_size=0 data.batch_size=-4 data.epoch_batches=0 data.num_workers=-1 trainer.max_steps=abc checkpoint.keep=2 checkpoint.every_n_steps=-5 trainer.precision=banana trainer.devices=two trainer.devices=0 optim.lr=-1 trainer.max_steps=0; do
  probe "config" $T run_dir=$W/cfg $kv
done
python3 - <<'PY'
from pathlib import Path
p = Path("/tmp/probes15/old/checkpoints/last.ckpt").resolve(); b = p.read_bytes(); p.write_bytes(b[: len(b) // 2])
PY
probe "truncated last.ckpt (resume)" $T run_dir=$W/old trainer.max_steps=4 resume=last
