"""The LightningModule: three weighted losses, per-slot freezing and learning rates.

The model is built in ``configure_model`` so sharded strategies (ZeRO-3, FSDP) can
construct it already partitioned.
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from omnitrain.config.schema import OptimConfig
from omnitrain.data.batch import Batch
from omnitrain.model.omni_model import OmniModel
from omnitrain.parallel import Strategy, strategy_for
from omnitrain.slots import MODEL_SLOTS, SpeechCondition
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


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """A 63-bit seed from the run seed and the position in training."""
    return int(np.random.SeedSequence([seed, step, micro, rank]).generate_state(2, np.uint64)[0] >> 1)


class OmniModule(L.LightningModule):
    def __init__(self, config: DictConfig | dict) -> None:
        super().__init__()
        cfg = config if isinstance(config, DictConfig) else OmegaConf.create(config)
        self.save_hyperparameters({"config": OmegaConf.to_container(cfg, resolve=True)})
        self.cfg = cfg
        self.model: OmniModel | None = None
        self._strategy: Strategy | None = None
        self.skipped: Counter[str] = Counter()
        self._micro = (-1, 0)  # (global step, micro-batch within it) of the last batch

    @property
    def strategy(self) -> Strategy:
        if self._strategy is None:
            self._strategy = strategy_for(self.cfg)
        return self._strategy

    def configure_model(self) -> None:
        """Runs inside the strategy's sharded context (under ZeRO-3, ``zero.Init``: each
        module's parameters are partitioned as it is built, so no rank ever holds the
        whole model), and inside the strategy's own construction context."""
        if self.model is not None:
            return
        with self.strategy.construction():
            self.model = OmniModel(self.cfg)
        if self.cfg.get("init_from"):
            with self.strategy.loading(self.model):
                load_matching(self.model, self.cfg.init_from)
        for slot in frozen_slots(self.cfg):
            getattr(self.model, slot).requires_grad_(False)

    # ---- steps -----------------------------------------------------------------
    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        """Reseed the RNG (flow-matching noise and times, condition dropout) from the step.

        The draws of step k then depend on (seed, k, micro-batch, rank) only, never on
        how many steps this process has run, so a resumed run continues the same loss
        curve (Lightning checkpoints do not carry RNG state), and ranks draw differently.
        """
        step = int(self.trainer.global_step)
        micro = self._micro[1] + 1 if self._micro[0] == step else 0
        self._micro = (step, micro)
        torch.manual_seed(step_seed(int(self.cfg.seed), step, micro, int(self.global_rank)))

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
        """The DiT + vocoder on the first validation reply's true codes (on a rank whose
        batch has no spoken reply: one silent code, so every rank runs the same modules)."""
        if batch.speech_rows.numel() == 0:
            codes = torch.zeros(1, 1, dtype=torch.long, device=self.device)
        else:
            n = int(batch.codec_mask[0].sum())
            codes = batch.codec_tokens[:1, :n].to(self.device)
        if batch.speech_rows.numel() and batch.reference_lengths.numel():
            cond = SpeechCondition(batch.speaker_ids[:1], batch.reference_mel[:1], batch.reference_lengths[:1])
        else:  # speaker 0, no reference: the same conditioning modules run as on other ranks
            n_mels = self.model.speech_cfg.n_mels
            cond = SpeechCondition(torch.zeros(1, dtype=torch.long), torch.zeros(1, 1, n_mels),
                                   torch.zeros(1, dtype=torch.long))
        cond = SpeechCondition(*(x.to(self.device) for x in (cond.speaker, cond.reference, cond.reference_lengths)))
        gen = self.cfg.generate
        g = torch.Generator(device=self.device).manual_seed(0)
        with self._full_parameters():
            wave = self.model.speech_to_wave(codes, torch.ones_like(codes, dtype=torch.bool), gen.ode_steps,
                                             gen.ode_method, gen.guidance, g, cond, gen.ode_sway)
        return wave[0]

    def _full_parameters(self):
        """Calling a submodule outside the root's forward (the strategy decides what that
        needs: FSDP gathers full parameters, every rank entering)."""
        return self.strategy.full_parameters(self.trainer if self._trainer is not None else None)

    def _log_skips(self, batch: Batch) -> None:
        self.skipped.update(batch.skipped)
        if self.skipped:
            total = float(sum(self.skipped.values()))
            self.log("data/skipped", total, prog_bar=True, reduce_fx="sum", sync_dist=True)
            for reason, n in self.skipped.items():
                self.log(f"data/skipped_{reason}", float(n), reduce_fx="sum", sync_dist=True)

    # ---- optimisation ----------------------------------------------------------
    def on_before_optimizer_step(self, optimizer) -> None:
        """Strategies that clip gradients themselves do it here (FSDP: by the global norm)."""
        self.strategy.before_optimizer_step(self.trainer, self.cfg.trainer.get("gradient_clip_val"))

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
        groups = self.param_groups()
        optimizer = self.strategy.optimizer(groups, opt.lr, tuple(opt.betas), opt.eps)  # e.g. ZeRO-Offload's
        if optimizer is None:
            optimizer = torch.optim.AdamW(groups, betas=tuple(opt.betas), eps=opt.eps)
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
