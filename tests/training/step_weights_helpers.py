"""Shared by the step-weighting tests (in-process and the torchrun worker): real Examples
from the demo shards, micro-batches of unequal sizes collated from them, a real Trainer
over them, and each optimizer step's gradient against the gradient of one batch that
holds all of the step's samples."""

from __future__ import annotations

import json
import tarfile
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import IterableDataset

from omnitrain.data.batch import Batch
from omnitrain.data.datamodule import StreamLoader
from omnitrain.data.sample_builder import Example, SampleBuilder
from omnitrain.model.omni_model import OmniModel
from omnitrain.parallel import strategy_for
from omnitrain.training.stages.module import OmniModule


def demo_examples(cfg, demo_dir: Path, n: int) -> list[Example]:
    """The first ``n`` usable training samples of the demo shards, in file order."""
    builder, out = SampleBuilder.from_config(cfg), []
    for shard in sorted(Path(demo_dir).glob("train-*.tar")):
        members: dict[str, dict[str, bytes]] = {}
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                key, _, ext = m.name.partition(".")
                members.setdefault(key, {})[ext] = tar.extractfile(m).read()
        for key, sample in members.items():
            try:
                out.append(builder.build(json.loads(sample["json"]), sample.__getitem__, key))
            except Exception:  # noqa: BLE001 - a sample the builder refuses is not used
                continue
            if len(out) == n:
                return out
    raise AssertionError(f"only {len(out)} usable samples in {demo_dir}")


def mixed_examples(cfg, demo_dir: Path, n: int) -> list[Example]:
    """``demo_examples`` with every third reply (the first among them) text only: no
    speech target, as a reply without a ``speech`` member."""
    out = demo_examples(cfg, demo_dir, n)
    for i in range(0, n, 3):
        out[i] = replace(out[i], reply_positions=None, codec_tokens=None, speech_mel=None, reference_mel=None)
    return out


def slices(examples: list[Example], sizes: list[int]) -> list[list[Example]]:
    out, start = [], 0
    for n in sizes:
        out.append(examples[start:start + n])
        start += n
    return out


class Listed(IterableDataset):
    """Fixed batches as a sized stream, as the training pipeline hands them over."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _clean(name: str) -> str:
    return name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")


def _full(trainer, grads: bool = False):
    """FSDP: every parameter (and gradient) whole, inside; else nothing to do."""
    from lightning.pytorch.strategies import FSDPStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel

    if not isinstance(trainer.strategy, FSDPStrategy):
        return nullcontext()
    return FullyShardedDataParallel.summon_full_params(trainer.strategy.model, with_grads=grads)


class StepCapture(L.Callback):
    """Per optimizer step: the weights at its start, the full gradient the optimizer gets
    (DeepSpeed ZeRO-1/2 and FSDP: gathered from the shards) and the logged train/* values."""

    def __init__(self) -> None:
        self.states: list[dict] = []
        self.grads: list[dict] = []
        self.logged: list[dict] = []
        self._step = -1
        self.strategy = ""

    def on_train_start(self, trainer, pl_module) -> None:
        self.strategy = type(trainer.strategy).__name__

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != self._step:
            self._step = trainer.global_step
            with _full(trainer):
                self.states.append({_clean(k): v.detach().clone() for k, v in pl_module.model.state_dict().items()})

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        engine = getattr(trainer.strategy, "deepspeed_engine", None)
        if engine is not None and not engine.is_gradient_accumulation_boundary():
            return
        params = [(_clean(n), p) for n, p in pl_module.model.named_parameters() if p.requires_grad]
        if engine is not None:  # every rank joins each gather, in the same order
            self.grads.append({n: p.get_full_hp_grad().detach().clone() for n, p in params})
            return
        with _full(trainer, grads=True):
            self.grads.append({n: p.grad.detach().clone() for n, p in params if p.grad is not None})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.fit_loop._should_accumulate():
            self.logged.append({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")})


def train_steps(cfg, batches: list[Batch], accumulate: int, steps: int) -> StepCapture:
    """``steps`` optimizer steps of the real LightningModule over ``batches`` (one epoch),
    through the training loader's step grouping, on the configured strategy."""
    L.seed_everything(0)
    capture = StepCapture()
    trainer = L.Trainer(
        accelerator="cpu", devices=cfg.trainer.devices, strategy=strategy_for(cfg).lightning(),
        precision="32-true", accumulate_grad_batches=accumulate, max_steps=steps, log_every_n_steps=1,
        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[capture],
    )
    loader = StreamLoader(Listed(batches), batch_size=None, accumulate=accumulate)
    trainer.fit(OmniModule(cfg), train_dataloaders=loader)
    return capture


def reference(cfg, state: dict, batch: Batch) -> tuple[dict, dict]:
    """(gradients, losses) of one batch's mean losses, one process, from ``state``."""
    model = OmniModel(cfg)
    model.load_state_dict(state)
    model.train()
    losses = model(batch)
    losses["loss"].backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return grads, {f"train/{k}": float(v.detach()) for k, v in losses.items()}


def relative_gap(grads: dict, want: dict) -> float:
    """|g - want| / |want| over every captured parameter together."""
    got = torch.cat([grads[n].flatten().double() for n in sorted(grads)])
    ref = torch.cat([want[n].flatten().double() for n in sorted(grads)])
    return float((got - ref).norm() / ref.norm())
