"""A distribution strategy as one object: its options, its checks, its Lightning strategy,
its memory model for ``omnitrain plan``, the checkpoints it resumes, and what it needs
around model construction, full-parameter access and the optimizer step.

Strategies register like plugins (``@register_strategy``, loaded through the
``omnitrain.plugins`` entry points); the typed options become the ``strategy`` config
group's schema, so ``configs/strategy/*.yaml`` hold overrides only. Nothing outside a
strategy's own module branches on which strategy runs.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import nullcontext
from datetime import timedelta
from typing import Any, ClassVar

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from torch import nn

from omnitrain.name_registry import Registry

FP16 = {"16", "16-mixed", "16-true"}

# ``strategy.timeout_s``: how long a collective waits for the other ranks before this rank
# fails. torch's own NCCL default (10 minutes), not Lightning's 30: a rank that died or hung
# (a stuck NCCL kernel, a SIGSTOPped or swapping process) frees every GPU of the job within
# about this much, while the longest legitimate wait (the other ranks at a barrier while
# rank 0 writes a multi-GB checkpoint, a first batch from cold storage) stays well under it.
DEFAULT_TIMEOUT_S = 600
# what an NCCL process group does on a timed-out collective, unless the user set it already
# (torch reads the first name of each list; the others are older spellings)
NCCL_WATCHDOG_NAMES = {
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": ("TORCH_NCCL_ASYNC_ERROR_HANDLING", "NCCL_ASYNC_ERROR_HANDLING"),
    "TORCH_NCCL_ENABLE_MONITORING": ("TORCH_NCCL_ENABLE_MONITORING",),
    "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC": ("TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC",),
}


def precision_kind(precision: str) -> str:
    """``32`` (fp32 weights and math), ``bf16-mixed`` (autocast over fp32 weights) or
    ``bf16`` (bf16 weights: bf16-true, or a strategy that casts the model)."""
    p = str(precision)
    if p.startswith(("bf16-mixed", "16-mixed")):
        return "bf16-mixed"
    if p.startswith(("bf16", "16")):
        return "bf16"
    return "32"


class Strategy:
    """Base: a full model copy per process (what ``auto`` and ``ddp`` do)."""

    name: ClassVar[str]
    Options: ClassVar[type]  # a dataclass; its fields are the strategy's settings
    checkpoint_kind: ClassVar[str] = "file"  # which readers' checkpoints it resumes

    def __init__(self, options: Any, cfg: Any) -> None:
        """``cfg``: the run's ``RunConfig``."""
        self.options, self.cfg = options, cfg

    # ---- configuration ------------------------------------------------------------
    def check(self) -> list[str]:
        """Problems with this strategy under this config, as messages saying what to set."""
        precision = str(self.cfg.trainer.precision)
        if precision in FP16 and self.on_cpu:
            return [f"trainer.precision={precision} (fp16) cannot run on the CPU; use trainer.precision=32-true "
                    "or bf16-mixed on CPU, or trainer=gpu for fp16"]
        return []

    @property
    def on_cpu(self) -> bool:
        return self.cfg.trainer.accelerator == "cpu"

    def process_group_backend(self) -> str | None:
        backend = getattr(self.options, "process_group_backend", None)
        return "gloo" if backend is None and self.on_cpu else backend

    @property
    def timeout_s(self) -> int:
        return int(getattr(self.options, "timeout_s", DEFAULT_TIMEOUT_S))

    def timeout(self) -> timedelta:
        return timedelta(seconds=self.timeout_s)

    @property
    def uses_nccl(self) -> bool:
        """Whether the process group will be NCCL (Lightning's choice on CUDA when unset)."""
        backend = self.process_group_backend()
        if backend is not None:
            return backend == "nccl"
        import torch

        return not self.on_cpu and torch.cuda.is_available()

    def nccl_watchdog(self) -> dict[str, str]:
        """PyTorch's NCCL watchdog, set in the environment before the process group starts
        (only the variables the user has not set; none without NCCL). Returns what it set.

        - ``TORCH_NCCL_ASYNC_ERROR_HANDLING=1``: a collective that times out
          (``strategy.timeout_s``) aborts the communicators and ends the process, so
          torchrun/srun see a failed rank and stop the job instead of it hanging.
        - ``TORCH_NCCL_ENABLE_MONITORING=1`` and ``TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC``: a
          monitor thread ends the process when the watchdog itself is stuck (in a hung CUDA
          or NCCL call, an abort that never returns) for ``max(60, timeout_s)`` seconds,
          so nothing of NCCL hangs longer than a collective may wait.
        """
        if not self.uses_nccl:
            return {}
        wanted = {"TORCH_NCCL_ASYNC_ERROR_HANDLING": "1", "TORCH_NCCL_ENABLE_MONITORING": "1",
                  "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC": str(max(60, self.timeout_s))}
        chosen = {k: v for k, v in wanted.items() if not any(n in os.environ for n in NCCL_WATCHDOG_NAMES[k])}
        os.environ.update(chosen)
        return chosen

    # ---- training -----------------------------------------------------------------
    def lightning(self) -> Any:
        """The object (or name) given to ``lightning.Trainer(strategy=...)``; a strategy
        that makes a process group calls ``nccl_watchdog`` here, before it starts."""
        self.nccl_watchdog()
        return "auto"

    def checkpoint_io(self) -> Any:
        """The writer of this strategy's single-file checkpoints (None: it writes its own)."""
        from omnitrain.checkpoints.direct_io import DirectCheckpointIO

        return DirectCheckpointIO()

    def trainer_args(self, args: dict) -> dict:
        """Lightning Trainer arguments as this strategy needs them."""
        return args

    def construction(self) -> Any:
        """Context in which the model is built (``configure_model``)."""
        return nullcontext()

    def loading(self, model: nn.Module) -> Any:
        """Context in which weights are copied into the built model (``init_from``)."""
        return nullcontext()

    @property
    def shards_parameters(self) -> bool:
        """Whether each rank holds only a shard of the weights, so any forward needs every
        rank (outside the training step, ``full_parameters`` gathers them first)."""
        return False

    def full_parameters(self, trainer: Any) -> Any:
        """Context in which a submodule may be called outside the root's forward."""
        return nullcontext()

    def before_optimizer_step(self, trainer: Any, clip: float | None) -> None:
        """Where a strategy clips gradients itself (Lightning otherwise does)."""

    # ---- non-finite steps (``omnitrain.training.callbacks.nonfinite``) ---------------------------
    def local_grads_finite(self, trainer: Any) -> Any:
        """Whether this rank's gradients (its shard, under FSDP) are all finite: a 0-dim
        bool tensor on the device (the caller reads it once, with the losses) or True."""
        import torch

        grads = [p.grad for p in trainer.lightning_module.parameters() if p.grad is not None]
        return True if not grads else torch.isfinite(torch.nn.utils.get_total_norm(grads, foreach=True))

    def drop_step(self, trainer: Any) -> None:
        """Make the coming optimizer step a no-op: torch optimizers leave a parameter
        without a gradient untouched (no update, no weight decay, no moment change)."""
        for p in trainer.lightning_module.parameters():
            p.grad = None

    def step_was_skipped(self, trainer: Any, dropped: bool) -> bool:
        """After the optimizer step: whether it changed nothing."""
        return dropped

    def optimizer(self, groups: list[dict], lr: float, betas: tuple[float, float], eps: float) -> Any:
        """The optimizer over ``groups``; None: the default (AdamW)."""
        return None

    def write_files(self, run_dir: Any) -> None:
        """Files beside the run that record what was launched."""

    def compute_kind(self) -> str:
        """How the step computes (``precision_kind``), for the memory model."""
        return precision_kind(str(self.cfg.trainer.precision))

    # ---- memory model -------------------------------------------------------------
    plan_row: ClassVar[str] = "ddp"  # the row of ``omnitrain plan`` this config runs

    @staticmethod
    def state_rows(stats: Any, gpus: int, per_node: int, options: Any) -> dict[str, tuple[float, float]]:
        """{row: (bytes per GPU, host bytes per node)} of model states and engine buffers,
        the mixed-precision Adam model of the ZeRO paper: 16 bytes per trainable parameter,
        2 per frozen one."""
        return {"ddp": (2.0 * stats.params + 14.0 * stats.trainable, 0.0)}

    # ---- checkpoints ----------------------------------------------------------------
    def resume_problems(self, reader: Any) -> list[str]:
        if reader.kind == self.checkpoint_kind:
            return []
        able = sorted(n for n, cls in STRATEGIES.items() if cls.checkpoint_kind == reader.kind)
        return [f"'{reader.path}' was written by a {reader.kind} strategy and cannot be resumed with "
                f"strategy={self.name}; resume with {able}, or export it (omnitrain export {reader.path} "
                "BUNDLE) to start a new run from its weights"]


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", "(strategy=<name>)")


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: make ``strategy=<cls.name>`` available, its options the schema."""
    STRATEGIES.add(cls.name, cls)
    fields = [("name", str, dataclasses.field(default=cls.name))]
    fields += [(f.name, f.type, f) for f in dataclasses.fields(cls.Options)]
    node = dataclasses.make_dataclass(f"{cls.Options.__name__}Node", fields)
    ConfigStore.instance().store(group="strategy", name=cls.name, node=node)
    return cls


def strategy_class(name: str) -> type[Strategy]:
    return STRATEGIES.get(name)


def strategy_options(node: DictConfig | dict) -> Any:
    """The typed options of a ``strategy`` config node (unknown keys are an error)."""
    data = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    cls = strategy_class(data.pop("name", None))
    known = {f.name for f in dataclasses.fields(cls.Options)}
    extra = sorted(set(data) - known)
    if extra:
        raise KeyError(f"strategy={cls.name} has no option {extra}; options: {sorted(known)}")
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.Options), data))


def strategy_for(cfg: Any) -> Strategy:
    """The configured strategy of a run config (``RunConfig``)."""
    from omnitrain.plugin_loading import load_plugins

    load_plugins()  # built-in strategies come through the entry points, as plugins do
    return strategy_class(cfg.strategy.name)(cfg.strategy.options, cfg)


def registered_strategies() -> dict[str, type[Strategy]]:
    """Every registered strategy class, built-ins loaded (for plans that compare them)."""
    from omnitrain.plugin_loading import load_plugins

    load_plugins()
    return dict(STRATEGIES.items())


def check_strategy(cfg: Any) -> list[str]:
    """Config check: the strategy's own checks pass (its name and options were checked
    when the typed config was made)."""
    return strategy_for(cfg).check()
