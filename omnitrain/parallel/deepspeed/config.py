"""The DeepSpeed JSON, generated from the run config and checked by DeepSpeed itself.

Users pick ``strategy=deepspeed_zero{1,2,3}`` or ``deepspeed_zero3_offload`` and never
write DeepSpeed JSON: precision comes from ``trainer.precision``, the micro-batch from
``data.batch_size`` (``data.rows_per_batch`` when batching by tokens), clipping from
``trainer.gradient_clip_val``, and ZeRO settings (stage, bucket sizes, offload) from the
strategy's options. ``check_deepspeed_config``
runs DeepSpeed's own config parser at compose time, so a bad value fails before launch.
``gradient_accumulation_steps`` is left out: Lightning sets it from
``trainer.accumulate_grad_batches`` (and refuses a config that sets it).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

NEVER_PRINT = 2**31 - 1  # DeepSpeed's own step logging duplicates ours


def precision_section(precision: str) -> dict[str, Any]:
    if precision.startswith("bf16"):
        return {"bf16": {"enabled": True}}
    if precision.startswith("16"):  # dynamic loss scaling, DeepSpeed's defaults
        return {"fp16": {"enabled": True, "loss_scale": 0, "initial_scale_power": 16,
                         "loss_scale_window": 1000, "hysteresis": 2, "min_loss_scale": 1}}
    return {}


def zero_section(o: Any, pin_memory: bool = True) -> dict[str, Any]:
    """``zero_optimization`` from the strategy's options (``DeepSpeedOptions``)."""
    zero: dict[str, Any] = {
        "stage": int(o.stage),
        "overlap_comm": bool(o.overlap_comm),
        "contiguous_gradients": bool(o.contiguous_gradients),
        "reduce_bucket_size": int(o.reduce_bucket_size),
    }
    if o.stage < 3:
        zero["allgather_bucket_size"] = int(o.allgather_bucket_size)
    else:
        zero["stage3_prefetch_bucket_size"] = int(o.prefetch_bucket_size)
        zero["stage3_param_persistence_threshold"] = int(o.param_persistence_threshold)
        zero["stage3_max_live_parameters"] = int(o.max_live_parameters)
        # export reads the fp32 master weights from the shards; no 16-bit copy at save time
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    if o.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": pin_memory}
    if o.offload_parameters:
        zero["offload_param"] = {"device": "cpu", "pin_memory": pin_memory}
    return zero


def deepspeed_config(options: Any, cfg: Any) -> dict[str, Any]:
    """The DeepSpeed JSON for this run (a plain dict) from its ``RunConfig``."""
    trainer, data = cfg.trainer, cfg.data
    tokens = data.batching == "tokens"
    ds: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(data.rows_per_batch if tokens else data.batch_size),
        "gradient_clipping": float(trainer.gradient_clip_val or 0.0),
        "zero_allow_untested_optimizer": True,  # our AdamW with per-slot groups
        # pinned host buffers speed up GPU <-> CPU copies; there are none on a CPU run
        "zero_optimization": zero_section(options, pin_memory=trainer.accelerator != "cpu"),
        "steps_per_print": NEVER_PRINT,
        "wall_clock_breakdown": False,
    }
    ds.update(precision_section(str(trainer.precision)))
    return ds


def check_deepspeed_config(ds: dict[str, Any], accumulate: int = 1) -> list[str]:
    """Problems DeepSpeed's own parser finds in ``ds``, as messages naming the key."""
    try:
        from deepspeed.runtime.config import DeepSpeedConfig
    except ImportError as exc:  # pragma: no cover - deepspeed is a pinned dependency
        return [f"strategy=deepspeed needs the deepspeed package: {exc}"]
    candidate = copy.deepcopy(ds)
    candidate["gradient_accumulation_steps"] = accumulate
    try:
        DeepSpeedConfig(candidate)
    except Exception as exc:  # pydantic ValidationError or DeepSpeed's own assertions
        errors = getattr(exc, "errors", None)
        if callable(errors):  # pydantic: name the field (our strategy option of the same name)
            text = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
                             for e in errors()[:4])
        else:
            text = str(exc).strip().splitlines()[0]
        return [f"DeepSpeed rejects the generated config (strategy.*): {text}"]
    return []


def write_deepspeed_config(ds: dict[str, Any], path: Path) -> Path:
    """Keep the exact JSON beside the run (what was launched, for the record)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ds, indent=2) + "\n")
    return path
