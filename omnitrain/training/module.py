"""The LightningModule: three weighted losses, per-slot freezing and learning rates.

The model is built in ``configure_model`` so sharded strategies (ZeRO-3, FSDP) can
construct it already partitioned.
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from omnitrain.config.schema import OptimConfig
from omnitrain.data.batch import Batch
from omnitrain.model.omni_model import MODEL_SLOTS, OmniModel
from omnitrain.slots import SpeechCondition
from omnitrain.training.init_from import load_matching

log = logging.getLogger("omnitrain")


def frozen_slots(cfg: DictConfig) -> list[str]:
    """Slots frozen by ``optim.freeze``, plus the talker/DiT when their loss weight is 0."""
    frozen = list(cfg.optim.freeze)
    if cfg.loss.codec == 0 and "talker" not in frozen:
        frozen.append("talker")
    if cfg.loss.flow == 0 and "dit" not in frozen:
        frozen.append("dit")
    return frozen


class OmniModule(L.LightningModule):
    def __init__(self, config: DictConfig | dict) -> None:
        super().__init__()
        cfg = config if isinstance(config, DictConfig) else OmegaConf.create(config)
        self.save_hyperparameters({"config": OmegaConf.to_container(cfg, resolve=True)})
        self.cfg = cfg
        self.model: OmniModel | None = None
        self.skipped: Counter[str] = Counter()

    def configure_model(self) -> None:
        if self.model is not None:
            return
        self.model = OmniModel(self.cfg)
        if self.cfg.get("init_from"):
            load_matching(self.model, self.cfg.init_from)
        for slot in frozen_slots(self.cfg):
            getattr(self.model, slot).requires_grad_(False)

    # ---- steps -----------------------------------------------------------------
    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        losses = self.model(batch)
        bs = int(batch.input_ids.shape[0])
        for name, value in losses.items():
            self.log(f"train/{name}", value, prog_bar=True, batch_size=bs)
        self._log_skips(batch)
        return losses["loss"]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        losses = self.model(batch)
        bs = int(batch.input_ids.shape[0])
        for name, value in losses.items():
            self.log(f"val/{name}", value, prog_bar=name == "loss", batch_size=bs, sync_dist=True)
        gen = self.cfg.generate
        speech = self.model.speech_eval(batch, gen.ode_steps, gen.ode_method, seed=batch_idx)
        n = int(batch.speech_rows.numel())
        # not synced: a rank whose batch has no speech logs nothing, and must not be waited for
        for name, value in speech.items():
            self.log(f"val/{name}", value, batch_size=n)

    @torch.no_grad()
    def audio_sample(self, batch: Batch) -> torch.Tensor | None:
        """The DiT + vocoder on the first validation reply's true codes."""
        if batch.speech_rows.numel() == 0:
            return None
        n = int(batch.codec_mask[0].sum())
        codes = batch.codec_tokens[:1, :n].to(self.device)
        cond = None
        if batch.reference_lengths.numel():
            cond = SpeechCondition(batch.speaker_ids[:1], batch.reference_mel[:1],
                                   batch.reference_lengths[:1])
            cond = SpeechCondition(*(x.to(self.device) for x in (cond.speaker, cond.reference,
                                                                  cond.reference_lengths)))
        gen = self.cfg.generate
        g = torch.Generator(device=self.device).manual_seed(0)
        wave = self.model.speech_to_wave(codes, torch.ones_like(codes, dtype=torch.bool), gen.ode_steps,
                                         gen.ode_method, gen.guidance, g, cond, gen.ode_sway)
        return wave[0]

    def _log_skips(self, batch: Batch) -> None:
        self.skipped.update(batch.skipped)
        if self.skipped:
            total = float(sum(self.skipped.values()))
            self.log("data/skipped", total, prog_bar=True, reduce_fx="sum", sync_dist=True)
            for reason, n in self.skipped.items():
                self.log(f"data/skipped_{reason}", float(n), reduce_fx="sum", sync_dist=True)

    # ---- optimisation ----------------------------------------------------------
    def param_groups(self) -> list[dict]:
        opt = OptimConfig(**OmegaConf.to_container(self.cfg.optim, resolve=True))
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

    def configure_optimizers(self):
        opt = OptimConfig(**OmegaConf.to_container(self.cfg.optim, resolve=True))
        optimizer = torch.optim.AdamW(self.param_groups(), betas=tuple(opt.betas), eps=opt.eps)
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
