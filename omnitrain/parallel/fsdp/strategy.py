"""``strategy=fsdp``: torch FSDP shards parameters, gradients and optimizer state; each
plugin's repeated blocks (``block_types``, declared by the plugin) are the units that are
sharded and, with ``activation_checkpointing``, recomputed. Checkpoints are sharded
folders (one file per rank); ``omnitrain export`` consolidates them."""

from __future__ import annotations

from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from omnitrain.parallel.base import DEFAULT_TIMEOUT_S, Strategy, register_strategy
from omnitrain.slots import MODEL_SLOTS

SHARDING = {"FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD"}


@dataclass
class FSDPOptions:
    sharding_strategy: str = "FULL_SHARD"  # FULL_SHARD | SHARD_GRAD_OP (ZeRO-2-like) | HYBRID_SHARD | NO_SHARD
    state_dict_type: str = "sharded"  # sharded | full (full needs a GPU)
    cpu_offload: bool = False
    activation_checkpointing: bool = False  # recompute each block in backward
    process_group_backend: str | None = None
    timeout_s: int = DEFAULT_TIMEOUT_S  # seconds a collective waits for the other ranks


def block_types(cfg: Any) -> set[type]:
    """The blocks the configured plugins declare (their classes' ``block_types``)."""
    from omnitrain.registry import registry
    from omnitrain.slots import SLOT_SPECS

    found: set[type] = set()
    for spec in SLOT_SPECS:
        if spec.module:
            found.update(registry(spec.name).get(cfg.slot(spec.name).name).cls.block_types)
    return found


@register_strategy
class FSDPStrategy(Strategy):
    name = "fsdp"
    Options = FSDPOptions
    checkpoint_kind = "fsdp"

    @property
    def plan_row(self) -> str:  # type: ignore[override]
        return "fsdp_grad_op" if self.options.sharding_strategy == "SHARD_GRAD_OP" else "fsdp"

    def check(self) -> list[str]:
        o, problems = self.options, super().check()
        if o.sharding_strategy not in SHARDING:
            problems.append(f"strategy.sharding_strategy must be one of {sorted(SHARDING)}")
        if o.state_dict_type not in ("sharded", "full"):
            problems.append("strategy.state_dict_type must be 'sharded' or 'full'")
        elif o.state_dict_type == "full" and self.on_cpu:
            problems.append("strategy.state_dict_type=full crashes torch FSDP on the CPU while saving; use "
                            "strategy.state_dict_type=sharded (omnitrain export reads sharded checkpoints)")
        return problems + self._lora_problems()

    def _lora_problems(self) -> list[str]:
        """torch FSDP cannot save a model whose root unit (everything outside the wrapped
        blocks: embeddings, final norms, heads, small slots) has no trainable parameter:
        its state_dict asserts. LoRA on some slots with every other slot frozen is that."""
        cfg = self.cfg
        lora = getattr(cfg, "lora", None)
        if lora is None or not lora.slots or lora.trainable:
            return []
        frozen = set(cfg.optim.freeze) | ({"talker"} if cfg.loss.codec == 0 else set()) | (
            {"dit"} if cfg.loss.flow == 0 else set())
        if all(slot in frozen or slot in lora.slots for slot in MODEL_SLOTS if slot != "vocoder"):
            return [f"strategy={self.name} cannot save this LoRA run: every parameter outside the Transformer "
                    "blocks is frozen, and torch FSDP's state_dict fails on such a model. Use "
                    "strategy=deepspeed_zero2 (or deepspeed_zero3), leave another slot training, or keep one "
                    "such parameter training, e.g. lora.trainable=[norm.weight]"]
        return []

    def lightning(self) -> Any:
        from omnitrain.parallel.fsdp.lightning_cpu import OmniFSDPStrategy

        self.nccl_watchdog()  # before the process group starts
        o, units = self.options, block_types(self.cfg)
        return OmniFSDPStrategy(
            sharding_strategy=o.sharding_strategy, state_dict_type=o.state_dict_type, cpu_offload=o.cpu_offload,
            auto_wrap_policy=units, activation_checkpointing_policy=units if o.activation_checkpointing else None,
            use_orig_params=True,  # per-slot parameter groups (learning rates, freezing)
            process_group_backend=self.process_group_backend(), timeout=self.timeout(),
        )

    def trainer_args(self, args: dict) -> dict:
        # Lightning's FSDP precision plugin refuses gradient_clip_val: clipped in before_optimizer_step
        return {**args, "gradient_clip_val": None}

    def before_optimizer_step(self, trainer: Any, clip: float | None) -> None:
        if clip:  # by the global norm over every shard
            trainer.model.clip_grad_norm_(float(clip))

    @property
    def shards_parameters(self) -> bool:  # type: ignore[override]
        return True

    def full_parameters(self, trainer: Any) -> Any:
        """Calling a submodule outside the root's forward sees flat shards: gather the full
        parameters for the block (every rank must enter it), and call the units' wrapped
        modules directly, so each rank then runs alone (ranks replying to different prompts
        call different modules). The weights stay fp32 in the block: autocast computes in
        the mixed-precision dtype."""
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        wrapped = trainer.strategy.model if trainer is not None else None
        if not isinstance(wrapped, FSDP):
            return nullcontext()
        stack = ExitStack()
        stack.enter_context(FSDP.summon_full_params(wrapped, writeback=False))
        # each unit's own forward would gather again, a collective every rank must join:
        # call the wrapped modules directly, so each rank runs alone (on the summoned weights)
        for unit in FSDP.fsdp_modules(wrapped):
            inner = unit._fsdp_wrapped_module
            unit.forward = lambda *args, _inner=inner, **kwargs: _inner(*args, **kwargs)
            stack.callback(unit.__dict__.pop, "forward", None)
        mixed = getattr(trainer.strategy, "mixed_precision_config", None)
        if mixed is not None and mixed.param_dtype is not None:
            device = trainer.strategy.root_device.type
            stack.enter_context(torch.autocast(device, dtype=mixed.param_dtype))
        return stack

    def checkpoint_io(self) -> Any:
        return None  # torch.distributed.checkpoint writes the sharded folder

    def compute_kind(self) -> str:
        kind = super().compute_kind()
        return "bf16" if kind == "bf16-mixed" else kind  # FSDP's mixed precision computes in bf16 weights

    @property
    def recomputes(self) -> bool:
        return self.options.activation_checkpointing

    @staticmethod
    def state_rows(stats: Any, gpus: int, per_node: int, options: Any) -> dict[str, tuple[float, float]]:
        """Full shard: everything divided by N, plus the largest unit gathered whole (16-bit
        weight and gradient); SHARD_GRAD_OP keeps whole 16-bit weights like ZeRO-2."""
        t, p = stats.trainable, stats.params
        gathered = 4.0 * stats.largest_layer
        return {"fsdp": ((2.0 * p + 14.0 * t) / gpus + gathered, 0.0),
                "fsdp_grad_op": (2.0 * p + 14.0 * t / gpus + gathered, 0.0)}
