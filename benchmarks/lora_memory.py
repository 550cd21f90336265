"""Peak memory of one training step: LoRA vs full fine-tuning of the Thinker, same shape.

    .venv/bin/python benchmarks/lora_memory.py                       # CPU, a 512-wide Thinker
    .venv/bin/python benchmarks/lora_memory.py --ranks 8 64 model=omni05b data.batch_size=8   # any shape

Every row trains the Thinker only (the encoders, Talker and DiT frozen, as LoRA recipes
for Qwen2.5-Omni do); rows differ in how: all of its weights, or rank-r adapters on
q/k/v/o/gate/up/down with its weights frozen. One step = forward, backward and AdamW
(its states made by a warm-up step first) on the largest of the batches ``omnitrain
plan`` draws from the shards. The peak is counted on the CPU by
``omnitrain.training.performance.live_bytes`` (live tensor storages at torch's dispatcher), on CUDA
by ``torch.cuda.max_memory_allocated``; beside it the plan's DDP row on one GPU (model
states + activations) for the same config, which counts only adapters as trainable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from omnitrain.model.lora import freeze_for_lora  # noqa: E402
from omnitrain.model.meta import meta_model  # noqa: E402
from omnitrain.model.omni_model import OmniModel  # noqa: E402
from omnitrain.plugin_loading import load_plugins  # noqa: E402
from omnitrain.run_config import compose_config  # noqa: E402
from omnitrain.training.performance.activations import batch_shape, draw_batches  # noqa: E402
from omnitrain.training.performance.live_bytes import measured_step_peak  # noqa: E402
from omnitrain.training.performance.plan import make_plan  # noqa: E402
from omnitrain.training.stages.module import frozen_slots  # noqa: E402

MiB = 2**20
THINKER_ONLY = ("loss.codec=0", "loss.flow=0", "optim.freeze=[audio_encoder,vision_encoder]")
CPU_SHAPE = ("recipe=smoke", "thinker.hidden_size=512", "thinker.heads=8", "thinker.kv_heads=2",
             "thinker.ffn_dim=1536", "thinker.layers=4", "data.batch_size=8", "data.num_workers=0")


def built(cfg, device: str) -> OmniModel:
    """The model as training holds it: frozen slots and LoRA's frozen base weights."""
    model = OmniModel(cfg)
    freeze_for_lora(model, cfg.lora)
    for slot in frozen_slots(cfg):
        getattr(model, slot).requires_grad_(False)
    return model.to(device)


def cuda_step_peak(model: OmniModel, batch, precision: str) -> float:
    from lightning.fabric.utilities.apply_func import move_data_to_device

    batch = move_data_to_device(batch, "cuda")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    dtype = torch.bfloat16 if precision == "bf16-mixed" else None

    def step() -> None:
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # the Adam states exist from here on
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return float(torch.cuda.max_memory_allocated())


def largest_batch(overrides: list[str]) -> dict:
    """The largest of the batches ``omnitrain plan`` draws, and the plan's batch shape:
    the same for every row (``--save-batch`` stores them for a machine without the shards)."""
    cfg = compose_config(overrides)
    model = meta_model(cfg)  # its tokenizer and encoders' token counts are read
    batch = max(draw_batches(cfg, model, 8), key=lambda b: b.input_ids.numel())
    return {"batch": batch, "shape": batch_shape(cfg, model)}


def measure(overrides: list[str], device: str, drawn: dict) -> dict:
    cfg = compose_config(overrides)
    load_plugins(list(cfg.plugins))
    plan = make_plan(cfg, 1, 1, shape=drawn["shape"])
    batch = drawn["batch"]
    model = built(cfg, device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    torch.manual_seed(0)
    if device == "cuda":
        peak = cuda_step_peak(model, batch, cfg.trainer.precision)
    else:
        peak = measured_step_peak(model, batch, cfg.trainer.precision)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"params": plan.stats.params, "trainable": trainable, "plan_trainable": plan.stats.trainable,
            "peak": peak, "plan": plan.states["ddp"] + plan.activations,
            "tokens": int(batch.input_ids.numel()), "precision": cfg.trainer.precision}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    ap.add_argument("--precision", default=None, help="trainer.precision, e.g. bf16-mixed")
    ap.add_argument("--save-batch", help="only draw the batch from the shards and save it here")
    ap.add_argument("--batch", help="a batch saved by --save-batch (no shards needed)")
    ap.add_argument("overrides", nargs="*", help="config overrides (default: a 512-wide Thinker on the smoke recipe)")
    args = ap.parse_args(argv)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    base = [*(args.overrides or CPU_SHAPE), *THINKER_ONLY]
    if args.precision:
        base.append(f"trainer.precision={args.precision}")
    if args.save_batch:
        torch.save(largest_batch(base), args.save_batch)
        return 0
    drawn = torch.load(args.batch, weights_only=False) if args.batch else largest_batch(base)
    rows = [("full fine-tuning", base)]
    rows += [(f"LoRA r={r}", [*base, "lora.slots=[thinker]", f"lora.rank={r}", f"lora.alpha={2 * r}"])
             for r in args.ranks]
    results = []
    for name, overrides in rows:
        out = measure(overrides, device, drawn)
        assert out["trainable"] == out["plan_trainable"], (name, out)  # the plan counts what trains
        results.append((name, out))
    full = results[0][1]["peak"]
    first = results[0][1]
    print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'CPU, live tensor bytes'}), "
          f"{first['precision']}, {first['params']:,} parameters, {first['tokens']:,} token positions per step")
    print(f"overrides: {' '.join(base)}")
    print("| training | trainable parameters | measured peak | vs full | plan (DDP, 1 GPU) |")
    print("|---|---|---|---|---|")
    for name, out in results:
        print(f"| {name} | {out['trainable']:,} | {out['peak'] / MiB:,.1f} MiB | {out['peak'] / full:.2f} | "
              f"{out['plan'] / MiB:,.1f} MiB |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
