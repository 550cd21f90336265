#!/usr/bin/env bash
# Many nodes without SLURM: run this on every node; torchrun's c10d rendezvous at
# MASTER_ADDR:MASTER_PORT forms the job, Lightning reads torchrun's environment.
#
#   NODES=2 MASTER_ADDR=node0.cluster scripts/launch/torchrun_multi_node.sh RECIPE [OVERRIDE...]
#   e.g. (on each of 2 nodes) NODES=2 MASTER_ADDR=10.0.0.1 scripts/launch/torchrun_multi_node.sh omni7b_full
#
# Expected memory per GPU: the recipe header's "expected" line, or
# `omnitrain plan recipe=RECIPE --gpus 8 --nodes $NODES`. Every node needs the same code,
# data paths and run_dir (a shared file system) so checkpoints land in one folder.
# Every start passes resume=auto, so rerunning the same command (a scheduler's retry)
# continues from the newest complete checkpoint in run_dir, or starts fresh if there is none.
# Environment: NODES (required), MASTER_ADDR (required), MASTER_PORT (29500), GPUS
# (GPUs per node, default: every GPU nvidia-smi lists), RDZV_ID (job id, default omnitrain),
# PYTHON, DRY_RUN=1 prints the command.
set -euo pipefail
recipe=${1:?usage: NODES=N MASTER_ADDR=HOST $0 RECIPE [OVERRIDE...]}
shift
nodes=${NODES:?set NODES to the number of nodes}
master=${MASTER_ADDR:?set MASTER_ADDR to the first node\'s address}
gpus=${GPUS:-$(nvidia-smi -L 2>/dev/null | wc -l)}
[ "$gpus" -gt 0 ] || { echo "no GPUs found: set GPUS=N" >&2; exit 2; }
python=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
cmd=("$python" -m torch.distributed.run --nnodes "$nodes" --nproc_per_node "$gpus"
     --rdzv_backend c10d --rdzv_endpoint "$master:${MASTER_PORT:-29500}" --rdzv_id "${RDZV_ID:-omnitrain}"
     -m omnitrain train "recipe=$recipe" "trainer.devices=$gpus" "trainer.num_nodes=$nodes" resume=auto "$@")
if [ "${DRY_RUN:-0}" = 1 ]; then echo "${cmd[*]}"; exit 0; fi
exec "${cmd[@]}"
