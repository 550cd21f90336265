"""Listen to training: after each validation, the model's own replies and one synthesis.

Two kinds of sample, both written to ``run_dir/samples/step-NNNNNN/`` and logged as media
to wandb / TensorBoard when attached (``omnitrain.training.tracking_media``):

- the model's replies to the first ``logger.samples`` validation prompts
  (``omnitrain.training.tracking_samples``): text, audio and the mel as an image. Rank 0
  generates while the other ranks go on to the next step (they wait for it there); under
  ZeRO-3 and FSDP, where a forward needs every rank, it is skipped with a logged reason.
- the module's ``audio_sample(batch)`` (run on every rank, written by rank 0): the DiT +
  vocoder on a validation reply's true codes (or the vocoder on its mel).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning as L
import torch

from omnitrain.data.sample_builder import SampleBuilder
from omnitrain.inference.replier import Replier
from omnitrain.training.tracking_media import SampleRow, StepSamples, log_media, write_files
from omnitrain.training.tracking_samples import Prompt, generation_blocked, validation_prompts

log = logging.getLogger("omnitrain")


class AudioSamples(L.Callback):
    def __init__(self, run_dir: str, sample_rate: int, replies: int = 0) -> None:
        """``replies``: how many validation prompts the model answers per validation."""
        self.dir = Path(run_dir) / "samples"
        self.sample_rate = sample_rate
        self.replies = replies
        self._batch = None
        self._prompts: list[Prompt] | None = None
        self._warned = False

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if batch_idx == 0:
            self._batch = batch

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self._batch is None:
            return
        # every rank synthesises: under ZeRO-3 / FSDP each forward gathers parameters from
        # all ranks, so a rank-0-only forward would wait forever for the others
        wave = pl_module.audio_sample(self._batch)
        self._batch = None
        if not trainer.is_global_zero:
            return
        true_codes = wave.detach().float().cpu() if wave is not None and wave.numel() else None
        rows, note = self._replies(trainer, pl_module)
        samples = StepSamples(int(trainer.global_step), self.sample_rate, rows, true_codes, note)
        if not rows and true_codes is None:
            return
        write_files(self.dir / f"step-{trainer.global_step:06d}", samples)
        log_media(trainer.loggers, samples)

    def _replies(self, trainer, pl_module) -> tuple[list[SampleRow], str]:
        """Rank 0's generated replies, or none and why."""
        if self.replies <= 0 or not hasattr(pl_module.model, "thinker"):
            return [], ""
        reason = generation_blocked(pl_module.strategy)
        if reason:
            if not self._warned:
                log.warning("validation samples: no generated replies (%s; rank 0 cannot decode alone); the "
                            "true-codes audio is still written", reason)
                self._warned = True
            return [], f"no generated replies: {reason}"
        if self._prompts is None:
            try:
                self._prompts = validation_prompts(pl_module.cfg, self.replies)
            except Exception as exc:  # noqa: BLE001 - a sample must never stop training
                log.warning("validation samples: no prompts from data.val_shards (%s: %s)", type(exc).__name__, exc)
                self._prompts = []
        t0 = time.perf_counter()
        cfg = pl_module.cfg
        replier = Replier(pl_module.model, cfg.generate, SampleBuilder.from_config(cfg), keep_speech_errors=True)
        rows = []
        with torch.random.fork_rng(devices=[pl_module.device] if pl_module.device.type == "cuda" else []), \
                trainer.precision_plugin.forward_context():
            torch.manual_seed(int(cfg.generate.seed))  # the same sampling draws each time
            for prompt in self._prompts:
                try:
                    reply = replier.replies([prompt.example], [replier.condition()])[0]
                except Exception as exc:  # noqa: BLE001 - a sample must never stop training
                    log.warning("validation samples: generating a reply to %s failed (%s: %s); skipped",
                                prompt.key, type(exc).__name__, exc)
                    continue
                rows.append(SampleRow(prompt.key, prompt.text, prompt.expected, reply.text, reply.wave, reply.mel,
                                      reply.speech_error))
        if rows:
            log.info("validation samples: %d replies in %.1fs", len(rows), time.perf_counter() - t0)
        return rows, ""
