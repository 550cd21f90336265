"""The omni task's LightningModule: three weighted losses, each per-token loss weighted by
its whole optimizer step (``step_weights``), per-slot freezing and learning rates. The
model is built in ``configure_model`` (``StageModule``) so sharded strategies (ZeRO-3,
FSDP) can construct it already partitioned.
"""

from __future__ import annotations

import logging
import math

import torch
from lightning.pytorch.plugins.precision import MixedPrecision

from omnitrain.config.typed import RunConfig
from omnitrain.data.batch import Batch
from omnitrain.model.lora import freeze_for_lora
from omnitrain.model.omni_model import OmniModel
from omnitrain.model.speech_path import speech_condition
from omnitrain.slots import MODEL_SLOTS, SpeechCondition
from omnitrain.training.log_steps import will_log
from omnitrain.training.stages.stage_module import StageModule
from omnitrain.training.stages.step_weights import StepWeights
from omnitrain.training.validation.val_metrics import RankMeans

log = logging.getLogger("omnitrain")


def vocoder_trains(cfg: RunConfig) -> bool:
    """Whether a loss of the vocoder's own (declared by its plugin) weighs more than 0."""
    from omnitrain.config.loss_checks import declared_by_slot

    own = declared_by_slot(cfg).get("vocoder", {})
    return any(float(cfg.loss.weights.get(name, default)) > 0 for name, default in own.items())


def frozen_slots(cfg: RunConfig) -> list[str]:
    """Slots frozen by ``optim.freeze``, plus the talker/DiT when their loss weight is 0, and the
    vocoder unless one of its own losses weighs more than 0 (a codes vocoder's, ``CodesVocoder.
    loss``): no other loss of this task reaches it (a mel vocoder trains in ``task=vocoder``),
    so its weights would only hold optimizer state."""
    frozen = list(cfg.optim.freeze)
    if "vocoder" not in frozen and not vocoder_trains(cfg):
        frozen.append("vocoder")
    if cfg.loss.codec == 0 and "talker" not in frozen:
        frozen.append("talker")
    if cfg.loss.flow == 0 and "dit" not in frozen:
        frozen.append("dit")
    return frozen


class OmniModule(StageModule):
    """The omni task: the Thinker's text loss, the Talker's codec loss and the DiT's flow
    loss, weighted, with per-slot freezing and learning rates."""

    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        self.step_weights = StepWeights()
        self.val_means = RankMeans()

    def after_build(self, model: OmniModel) -> None:
        freeze_for_lora(model, self.cfg.lora)  # LoRA slots: only their adapters train
        for slot in frozen_slots(self.cfg):
            getattr(model, slot).requires_grad_(False)

    # ---- steps -----------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        bs = int(batch.input_ids.shape[0])
        if batch.step_totals is None or self._trainer is None:  # each loss this batch's mean
            losses = self.model(batch)
            for name, value in losses.items():
                self.log(f"train/{name}", value, prog_bar=True, batch_size=bs)
        else:
            losses = self._step_weighted(batch, bs)
        self._log_skips(batch)
        return losses["loss"]

    def _step_weighted(self, batch: Batch, bs: int) -> dict[str, torch.Tensor]:
        """Losses weighted by the whole optimizer step (``step_weights``); logged once per
        step, at its last micro-batch, as the step's means over every micro-batch and rank."""
        weights, micro = self.step_weights, self._micro[1]
        if micro == 0 or weights.norms is None:  # the step's first micro-batch
            weights.begin(batch.step_totals, self.trainer, self.device)
        losses = self.model(batch, weights.norms)
        weights.add(losses)
        if not self.trainer.fit_loop._should_accumulate():  # the step's last micro-batch
            weights.check_grouping(micro + 1, int(self.trainer.global_step))
            if will_log(self.trainer):
                for name, value in weights.means().items():
                    self.log(f"train/{name}", value, prog_bar=True, batch_size=bs)
        return losses

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Every rank runs the same number of batches (a rank with fewer samples repeats one,
        marked ``repeat``: it runs, for the collectives of sharded strategies, and is not
        counted); the metrics are means over every rank's samples (``val_metrics``)."""
        out = self.model.run(batch)  # one forward: the losses and the speech metrics read it
        losses = self.model.losses(batch, out)
        gen = self.cfg.generate
        speech = self.model.speech_eval(batch, out, gen.ode_steps, gen.ode_method, seed=batch_idx)
        if batch.stream is not None and batch.stream.get("repeat"):
            return
        bs = int(batch.input_ids.shape[0])
        for name, value in losses.items():
            self.val_means.add(name, value, bs)
        n = int(batch.speech_rows.numel())
        for name, value in speech.items():
            self.val_means.add(name, value, n)

    def on_validation_epoch_end(self) -> None:
        for name, value in self.val_means.reduce(self.device).items():
            self.log(f"val/{name}", value, prog_bar=name == "loss")

    @torch.no_grad()
    def audio_sample(self, batch: Batch) -> torch.Tensor | None:
        """The DiT + vocoder on the first validation reply's true codes (on a rank whose
        batch has no spoken reply: one silent code, so every rank runs the same modules)."""
        n_mels = self.model.speech_cfg.n_mels
        if batch.speech_rows.numel() == 0:  # speaker 0, no reference: the same modules run as elsewhere
            groups = self.model.codec.groups
            codes = torch.zeros(1, 1, *([groups] if groups > 1 else []), dtype=torch.long)
            cond = SpeechCondition.none(1, n_mels)
        else:
            codes = batch.codec_tokens[:1, : int(batch.codec_mask[0].sum())]
            cond = speech_condition(batch, n_mels).first()
        codes, cond = codes.to(self.device), cond.to(self.device)
        gen = self.cfg.generate
        g = torch.Generator(device=self.device).manual_seed(0)
        with self._full_parameters():
            wave = self.model.speech_to_wave(codes, torch.ones(codes.shape[:2], dtype=torch.bool), gen.ode_steps,
                                             gen.ode_method, gen.guidance, g, cond, gen.ode_sway)
        return wave[0]

    # ---- optimisation ----------------------------------------------------------
    def param_groups(self) -> list[dict]:
        opt = self.cfg.optim
        groups = []
        for slot in MODEL_SLOTS:
            params = [(n, p) for n, p in getattr(self.model, slot).named_parameters() if p.requires_grad]
            lr = opt.slot_lr.get(slot, opt.lr)
            decay = [p for n, p in params if p.dim() >= 2]
            no_decay = [p for n, p in params if p.dim() < 2]  # biases and norms
            if decay:
                groups.append({"params": decay, "lr": lr, "weight_decay": opt.weight_decay, "name": slot})
            if no_decay:
                groups.append({"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{slot}_no_decay"})
        if not groups:
            raise ValueError("every slot is frozen: nothing to train (check optim.freeze and loss weights)")
        return groups

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning refuses to clip for any fused optimizer under autocast, for fear of a
        loss scale the fused step would undo; bf16 autocast has no loss scale, so clipping
        by norm before the fused step is exact."""
        plugin = self.trainer.precision_plugin
        if (gradient_clip_val and isinstance(plugin, MixedPrecision) and plugin.scaler is None
                and optimizer.defaults.get("fused") and gradient_clip_algorithm in (None, "norm")):
            plugin.clip_grad_by_norm(optimizer, float(gradient_clip_val))
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        opt = self.cfg.optim
        groups = self.param_groups()
        optimizer = self.strategy.optimizer(groups, opt.lr, tuple(opt.betas), opt.eps)  # e.g. ZeRO-Offload's
        if optimizer is None:
            # fused: one kernel for every parameter on the GPU instead of a loop of small ones
            on_gpu = all(p.is_cuda for g in groups for p in g["params"])
            fused = on_gpu if opt.fused is None else opt.fused
            optimizer = torch.optim.AdamW(groups, betas=tuple(opt.betas), eps=opt.eps, fused=fused or None)
        total = max(1, int(self.trainer.max_steps if self.trainer.max_steps > 0 else 1))

        def lr_at(step: int) -> float:
            if step < opt.warmup_steps:
                return (step + 1) / opt.warmup_steps
            if opt.schedule == "constant":
                return 1.0
            progress = min(1.0, (step - opt.warmup_steps) / max(1, total - opt.warmup_steps))
            return opt.min_lr_ratio + (1 - opt.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
