"""Listen to training: after each validation, synthesise one reply and log it.

The module's ``audio_sample(batch)`` (run on every rank, written by rank 0) gives a waveform (the DiT + vocoder on a validation
reply's codes, or the vocoder on its mel); it is written to ``run_dir/samples`` and
logged as audio to wandb when a wandb logger is attached (offline by default).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import soundfile as sf
from lightning.pytorch.loggers import WandbLogger


class AudioSamples(L.Callback):
    def __init__(self, run_dir: str, sample_rate: int) -> None:
        self.dir = Path(run_dir) / "samples"
        self.sample_rate = sample_rate
        self._batch = None

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
        if not trainer.is_global_zero or wave is None or wave.numel() == 0:
            return
        audio = wave.detach().float().cpu().numpy()
        self.dir.mkdir(parents=True, exist_ok=True)
        sf.write(str(self.dir / f"step-{trainer.global_step:06d}.wav"), audio, self.sample_rate)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_audio("samples/speech", [audio], step=trainer.global_step,
                                 sample_rate=[self.sample_rate])
