#!/usr/bin/env bash
# LoRA on one GPU under ZeRO-2, ZeRO-3 and FSDP (bf16-mixed): 4 training steps each, the
# merged export and the adapter-only export, then the merged forward vs the adapter
# forward (benchmarks/lora_merge_check.py). Usage: benchmarks/lora_gpu_check.sh DEMO_DIR [RUNS_DIR]
set -euo pipefail
D=${1:?demo shards folder (omnitrain data demo DIR)}
R=${2:-/tmp/lora_gpu_check}
C="recipe=smoke trainer=gpu data.train_shards=$D/train-*.tar data.val_shards=$D/val-*.tar logger=csv
   lora.slots=[thinker,talker] optim.freeze=[audio_encoder,vision_encoder,dit] optim.lr=0.01
   trainer.max_steps=4 trainer.val_check_interval=4 trainer.limit_val_batches=1 checkpoint.every_n_steps=4
   trainer.precision=bf16-mixed trainer.devices=1"
for s in deepspeed_zero2 deepspeed_zero3 fsdp; do
  python3 -m omnitrain train $C strategy=$s run_dir=$R/$s > $R.$s.log 2>&1 || { tail -40 $R.$s.log; exit 1; }
  echo "$s $(grep -o 'train/loss=[0-9.a-z]*' $R.$s.log | tail -1)"
  python3 -m omnitrain export $R/$s/checkpoints/last.ckpt $R/$s/bundle | tail -1
  python3 -m omnitrain export $R/$s/checkpoints/last.ckpt $R/$s/adapter --adapter-only | tail -1
  python3 "$(dirname "$0")/lora_merge_check.py" $R/$s cuda
done
