"""Gradient norms, total and per model slot, logged on each log step.

Computed where the optimizer step happens (Lightning's ``on_before_optimizer_step``:
after backward, after AMP unscaling, before clipping), so it costs one fused norm over
the gradients that exist anyway, and only on steps that are logged.

Which strategies give what:

- ``auto``/``ddp``: every rank holds the whole reduced gradient: total and per slot.
- ``fsdp``: each rank holds a shard of each gradient; the squared norms of the shards are
  summed over ranks (one all-reduce of six numbers): total and per slot.
- ``deepspeed`` (ZeRO 1-3): the gradients live in the engine's partitions, not in
  ``param.grad``; the total is the engine's own ``get_global_grad_norm()`` after its
  step, the per-slot norms sum the squares of each rank's own gradient fragments
  (ZeRO-3: ``safe_get_local_grad``; ZeRO-1/2: the fragment the optimizer partition owns,
  as DeepSpeed's ``get_full_hp_grad`` reads it) over ranks, as under FSDP.
"""

from __future__ import annotations

import math

import lightning as L
import torch

from omnitrain.slots import MODEL_SLOTS
from omnitrain.training.log_steps import will_log


def _squared_norm(grads: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    if not grads:
        return torch.zeros((), device=device, dtype=torch.float32)
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0, foreach=True).float() ** 2


def _plain_grad(p: torch.Tensor) -> torch.Tensor | None:
    return p.grad.detach() if p.grad is not None else None


def _deepspeed_local_grad(p: torch.Tensor) -> torch.Tensor | None:
    """This rank's own fragment of a parameter's gradient under ZeRO (None: it owns none)."""
    if hasattr(p, "ds_id"):  # ZeRO-3: the local partition
        from deepspeed.utils import safe_get_local_grad

        return safe_get_local_grad(p)
    mapping = getattr(p, "_hp_mapping", None)
    if mapping is None:  # ZeRO-1/2: no fragment of this parameter in this rank's partition
        return None
    fragment = mapping.get_lp_grad_fragment(p._index_in_param_group).detach().float().flatten()
    if fragment.numel() == p.numel():  # a full buffer (bf16 optimizer): only the owned part counts
        address = mapping.lp_fragment_address
        fragment = fragment.narrow(0, address.start, address.numel)
    return fragment


def _is_deepspeed(trainer) -> bool:
    return hasattr(trainer.strategy, "deepspeed_engine")


def _is_fsdp(trainer) -> bool:
    from lightning.pytorch.strategies import FSDPStrategy

    return isinstance(trainer.strategy, FSDPStrategy)


class GradNorms(L.Callback):
    """Logs ``grad/norm`` (every trainable parameter) and ``grad/norm_<slot>`` for each
    of ``MODEL_SLOTS`` that has gradients; norms are before clipping."""

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not pl_module.automatic_optimization or not will_log(trainer):
            return  # the GAN vocoder stage steps two optimizers by hand: not tracked here
        engine = getattr(trainer.strategy, "deepspeed_engine", None)
        if engine is not None and not engine.is_gradient_accumulation_boundary():
            return  # DeepSpeed accumulates itself: its gradients exist only at the boundary
        model = getattr(pl_module, "model", None)
        slots = [s for s in MODEL_SLOTS if model is not None and hasattr(model, s)]
        sharded = _is_deepspeed(trainer) or _is_fsdp(trainer)
        grad = _deepspeed_local_grad if _is_deepspeed(trainer) else _plain_grad
        in_slot: set[int] = set()
        parts: list[torch.Tensor] = []
        for slot in slots:
            params = [p for p in getattr(model, slot).parameters() if p.requires_grad]
            in_slot.update(id(p) for p in params)
            parts.append(_squared_norm([g for g in map(grad, params) if g is not None], pl_module.device))
        rest = [g for p in pl_module.parameters()
                if p.requires_grad and id(p) not in in_slot and (g := grad(p)) is not None]
        parts.append(_squared_norm(rest, pl_module.device))  # parameters outside the slots (e.g. a discriminator)
        squares = torch.stack(parts)
        if sharded and torch.distributed.is_initialized():
            torch.distributed.all_reduce(squares)  # each rank's fragments are disjoint: squares add up
        trained = [any(p.requires_grad for p in getattr(model, s).parameters()) for s in slots]
        if not _is_deepspeed(trainer):  # DeepSpeed: the engine's own total, after its step
            pl_module.log("grad/norm", squares.sum().sqrt(), on_step=True, on_epoch=False)
        for slot, square, present in zip(slots, squares[:-1], trained, strict=True):
            if present:  # frozen slots have no gradient to speak of
                pl_module.log(f"grad/norm_{slot}", square.sqrt(), on_step=True, on_epoch=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        """DeepSpeed: the engine's global norm of the step it just took."""
        if not _is_deepspeed(trainer) or not pl_module.automatic_optimization \
                or trainer.fit_loop._should_accumulate():
            return
        norm = trainer.strategy.deepspeed_engine.get_global_grad_norm()
        if norm is None:
            return
        value = float(norm.item() if isinstance(norm, torch.Tensor) else norm)
        if math.isfinite(value) and value >= 0:
            pl_module.log("grad/norm", value, on_step=True, on_epoch=False)
