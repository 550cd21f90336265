"""Callbacks: throughput in the progress bar and the logs."""

from __future__ import annotations

import time

import lightning as L

from omnitrain.data.batch import Batch


class Throughput(L.Callback):
    """Samples/s and real (unpadded) tokens/s, smoothed over recent steps."""

    def __init__(self, smoothing: float = 0.9) -> None:
        self.smoothing = smoothing
        self._start: float | None = None
        self._rates: dict[str, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch: Batch, batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Batch, batch_idx: int) -> None:
        if self._start is None:
            return
        dt = max(time.perf_counter() - self._start, 1e-9)
        world = trainer.world_size
        if not isinstance(batch, Batch):  # the vocoder stage: (mel, wave) segments
            now = {"perf/samples_per_s": int(batch[0].shape[0]) * world / dt}
        else:
            now = {
                "perf/samples_per_s": int(batch.input_ids.shape[0]) * world / dt,
                "perf/tokens_per_s": batch.num_tokens * world / dt,
            }
        for key, value in now.items():
            old = self._rates.get(key)
            self._rates[key] = value if old is None else self.smoothing * old + (1 - self.smoothing) * value
        if "perf/tokens_per_s" in self._rates:
            pl_module.log("perf/tokens_per_s", self._rates["perf/tokens_per_s"], prog_bar=True)
        pl_module.log("perf/samples_per_s", self._rates["perf/samples_per_s"])
