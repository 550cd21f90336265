"""``strategy=deepspeed`` (presets ``deepspeed_zero1/2/3``, ``deepspeed_zero3_offload``):
ZeRO stage 1 shards optimizer states, 2 also gradients, 3 also parameters (the model is
built already partitioned); offload moves optimizer states (and parameters) to host
memory, with DeepSpeed's CPU Adam."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from omnitrain.parallel.base import DEFAULT_TIMEOUT_S, Strategy, register_strategy
from omnitrain.parallel.deepspeed.config import (
    check_deepspeed_config,
    deepspeed_config,
    write_deepspeed_config,
)

PRECISIONS = {"32", "32-true", "bf16-mixed", "bf16-true", "16-mixed", "16-true"}


@dataclass
class DeepSpeedOptions:
    stage: int = 2
    offload_optimizer: bool = False  # ZeRO-Offload: optimizer state and step on the CPU
    offload_parameters: bool = False  # stage 3 only: parameters in host memory too
    reduce_bucket_size: int = 200_000_000  # elements per gradient reduce(-scatter) bucket
    allgather_bucket_size: int = 200_000_000  # stages 1-2: elements per parameter all-gather bucket
    prefetch_bucket_size: int = 50_000_000  # stage 3: elements of parameters fetched ahead of use
    param_persistence_threshold: int = 100_000  # stage 3: smaller parameters stay whole
    max_live_parameters: int = 1_000_000_000  # stage 3: gathered parameters held at once
    overlap_comm: bool = True
    contiguous_gradients: bool = True
    process_group_backend: str | None = None
    timeout_s: int = DEFAULT_TIMEOUT_S  # seconds a collective waits for the other ranks


@register_strategy
class DeepSpeedStrategy(Strategy):
    name = "deepspeed"
    Options = DeepSpeedOptions
    checkpoint_kind = "deepspeed"

    @property
    def plan_row(self) -> str:  # type: ignore[override]
        o = self.options
        return "zero3_offload" if o.offload_parameters else f"zero{o.stage}"

    def check(self) -> list[str]:
        o, trainer = self.options, self.cfg.trainer
        precision = str(trainer.precision)
        problems = super().check()
        if o.stage not in (1, 2, 3):
            problems.append(f"strategy.stage must be 1, 2 or 3 (ZeRO stage), got {o.stage!r}")
        if o.offload_parameters and o.stage != 3:
            problems.append(f"strategy.offload_parameters needs ZeRO stage 3 (strategy.stage={o.stage}); use "
                            "strategy=deepspeed_zero3_offload, or offload only the optimizer")
        if precision not in PRECISIONS:
            problems.append(f"DeepSpeed does not support trainer.precision={precision}; use one of {sorted(PRECISIONS)}")
        if trainer.gradient_clip_algorithm == "value":
            problems.append("DeepSpeed clips gradients by norm only: remove trainer.gradient_clip_algorithm=value")
        return problems or check_deepspeed_config(deepspeed_config(o, self.cfg))

    def lightning(self) -> Any:
        from omnitrain.parallel.deepspeed.lightning_cpu import OmniDeepSpeedStrategy

        self.nccl_watchdog()  # before the process group starts
        return OmniDeepSpeedStrategy(config=deepspeed_config(self.options, self.cfg),
                                     process_group_backend=self.process_group_backend(), timeout=self.timeout())

    def checkpoint_io(self) -> Any:
        return None  # the engine writes its folder itself

    def compute_kind(self) -> str:
        kind = super().compute_kind()
        return "bf16" if kind == "bf16-mixed" else kind  # DeepSpeed casts the model itself

    def construction(self) -> Any:
        if self.options.stage != 3:
            return super().construction()
        from omnitrain.parallel.deepspeed.zero_init import zero3_safe_inits

        return zero3_safe_inits()

    def loading(self, model: nn.Module) -> Any:
        if self.options.stage != 3:
            return super().loading(model)
        from omnitrain.parallel.deepspeed.zero_init import gathered_for_write

        return gathered_for_write(model)

    @property
    def shards_parameters(self) -> bool:  # type: ignore[override]
        return self.options.stage == 3

    def full_parameters(self, trainer: Any) -> Any:
        """ZeRO-3: every weight gathered and the hooks off, so each rank runs the model
        alone for the block (``omnitrain.parallel.deepspeed.gathered``)."""
        engine = trainer.strategy.model if trainer is not None and self.options.stage == 3 else None
        if engine is None:
            return super().full_parameters(trainer)
        from omnitrain.parallel.deepspeed.gathered import gathered_without_hooks

        return gathered_without_hooks(engine)

    # ---- non-finite steps: the ZeRO optimizers check their own gradient partitions and
    # skip a step whose gradient norm is not finite (DeepSpeed's "overflow", for every
    # precision in 0.19), which a non-finite loss makes them
    def local_grads_finite(self, trainer: Any) -> bool:
        return True  # the gradients live in the engine's partitions; it checks them in step()

    def drop_step(self, trainer: Any) -> None:
        """Nothing to do: the engine skips the step itself."""

    def step_was_skipped(self, trainer: Any, dropped: bool) -> bool:
        return bool(getattr(trainer.strategy.deepspeed_engine.optimizer, "overflow", False))

    def optimizer(self, groups: list[dict], lr: float, betas: tuple[float, float], eps: float) -> Any:
        if not self.options.offload_optimizer:
            return None
        from deepspeed.ops.adam import DeepSpeedCPUAdam  # ZeRO-Offload steps on the CPU

        return DeepSpeedCPUAdam(groups, lr=lr, betas=betas, eps=eps, adamw_mode=True)

    def write_files(self, run_dir: Path) -> None:
        write_deepspeed_config(deepspeed_config(self.options, self.cfg), Path(run_dir) / "deepspeed.json")

    # ---- memory model -------------------------------------------------------------
    @staticmethod
    def state_rows(stats: Any, gpus: int, per_node: int, options: Any) -> dict[str, tuple[float, float]]:
        """ZeRO paper's model per GPU (N GPUs, T trainable, P parameters), plus the buffers
        the engine really allocates: stages 1-2 reduce and all-gather buckets (2 bytes an
        element), stage 3 the gathered largest layer (16-bit weight and gradient, as
        DeepSpeed's own estimator counts it) and its reduce and prefetch buckets."""
        o = options or DeepSpeedOptions()
        t, p = stats.trainable, stats.params
        zero12 = 2.0 * (o.reduce_bucket_size + o.allgather_bucket_size)
        zero3 = 4.0 * stats.largest_layer + 2.0 * (o.reduce_bucket_size + o.prefetch_bucket_size)
        sharded = (2.0 * p + 14.0 * t) / gpus
        return {
            "zero1": (2.0 * p + 2.0 * t + 12.0 * t / gpus + zero12, 0.0),
            "zero2": (2.0 * p + 14.0 * t / gpus + zero12, 0.0),
            "zero3": (sharded + zero3, 0.0),
            "zero3_offload": (zero3, sharded * per_node),
        }

    # ---- checkpoints ----------------------------------------------------------------
    def resume_problems(self, reader: Any) -> list[str]:
        problems = super().resume_problems(reader)
        from omnitrain.parallel.world import world_size_of

        world, here = getattr(reader, "world", None), world_size_of(self.cfg)
        if not problems and world not in (None, here):
            problems.append(f"'{reader.path}' holds ZeRO shards for {world} processes but this run has {here}; "
                            f"resume on {world} processes, or export it first (omnitrain export {reader.path} "
                            "BUNDLE) and start a new run from it with init_from=BUNDLE")
        return problems
