"""Listen to training: after each validation, the model's own replies, their metrics, and
one synthesis.

- the model's replies to the first ``logger.samples`` validation prompts, answered on
  every rank (its share) and scored as ``eval.metrics`` says
  (``omnitrain.training.validation.validation_replies``): the metrics logged as ``val/<metric>`` to
  every tracker, the replies (text, audio, the mel as an image) written to
  ``run_dir/samples/step-NNNNNN/`` and logged as media to wandb / TensorBoard when attached
  (``omnitrain.training.validation.tracking_media``). Under ZeRO-3 and FSDP too.
- the module's ``audio_sample(batch)`` (run on every rank, written by rank 0): the DiT +
  vocoder on a validation reply's true codes (or the vocoder on its mel).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L

from omnitrain.training.validation.tracking_media import StepSamples, log_media, write_files
from omnitrain.training.validation.validation_replies import ValidationReplies


class AudioSamples(L.Callback):
    def __init__(self, run_dir: str, sample_rate: int, replies: int = 0) -> None:
        """``replies``: how many validation prompts the model answers per validation."""
        self.dir = Path(run_dir) / "samples"
        self.sample_rate = sample_rate
        self.replies = ValidationReplies(replies)
        self._batch = None

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if batch_idx == 0:
            self._batch = batch

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or self._batch is None:
            return
        # every rank synthesises and replies: under ZeRO-3 / FSDP each forward, or the
        # gathering of the weights, needs all ranks
        wave = pl_module.audio_sample(self._batch)
        self._batch = None
        rows, metrics = [], {}
        if self.replies.count > 0 and hasattr(pl_module.model, "thinker"):
            rows, metrics = self.replies.run(trainer, pl_module)
        for name, value in metrics.items():  # the same on every rank: reduced over all of them
            pl_module.log(f"val/{name}", value)
        if not trainer.is_global_zero:
            return
        true_codes = wave.detach().float().cpu() if wave is not None and wave.numel() else None
        samples = StepSamples(int(trainer.global_step), self.sample_rate, rows, true_codes)
        if not rows and true_codes is None:
            return
        write_files(self.dir / f"step-{trainer.global_step:06d}", samples)
        log_media(trainer.loggers, samples)
