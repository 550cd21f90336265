#!/usr/bin/env bash
# One node, one process per GPU, launched by torchrun; Lightning reads torchrun's
# environment, omnitrain adds no launcher of its own.
#
#   scripts/launch/torchrun_single_node.sh RECIPE [OVERRIDE...]
#   e.g. scripts/launch/torchrun_single_node.sh omni3b_full
#        scripts/launch/torchrun_single_node.sh omni7b_full trainer.accumulate_grad_batches=16
#
# Expected memory per GPU: the "expected" line in the recipe's header, or
# `omnitrain plan recipe=RECIPE --gpus 8 --nodes 1` for this layout (it warns if it won't fit).
# Every start passes resume=auto, so rerunning the same command (a scheduler's retry)
# continues from the newest complete checkpoint in run_dir, or starts fresh if there is none.
# Environment: GPUS (default: every GPU nvidia-smi lists), PYTHON (default .venv/bin/python
# if present, else python), DRY_RUN=1 prints the command instead of running it.
set -euo pipefail
recipe=${1:?usage: $0 RECIPE [OVERRIDE...]}
shift
gpus=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
[ "$gpus" -gt 0 ] || { echo "no GPUs found: set GPUS=N" >&2; exit 2; }
python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
cmd=("$python" -m torch.distributed.run --standalone --nproc_per_node "$gpus"
     -m omnitrain train "recipe=$recipe" "trainer.devices=$gpus" trainer.num_nodes=1 resume=auto "$@")
if [ "${DRY_RUN:-0}" = 1 ]; then echo "${cmd[*]}"; exit 0; fi
exec "${cmd[@]}"
