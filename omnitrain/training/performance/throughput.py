"""Callbacks: throughput, model FLOPs utilisation and data wait in the progress bar and the logs."""

from __future__ import annotations

import time

import lightning as L
import torch

from omnitrain.data.batch import Batch
from omnitrain.data.budget import padding_waste
from omnitrain.model.omni_model import OmniModel
from omnitrain.training.log_steps import will_log
from omnitrain.training.performance.flops import BatchFlops, device_peak_flops


class Throughput(L.Callback):
    """Per step: samples/s and real (unpadded) tokens/s over all ranks, model TFLOP/s per
    device and MFU (FLOPs from ``omnitrain.training.performance.flops`` over the device's peak; MFU
    is logged when the peak is known: a GPU in the data-sheet table or
    ``perf.peak_tflops``). Rates use the wall time between consecutive steps (data
    loading included) and are smoothed over recent steps (exponential, 0.9).

    ``perf/data_wait``: the fraction of the step the loop spent between the previous
    batch's end and this batch's start, i.e. waiting for the data loader (near 0 when the
    loader keeps up; near 1 when the GPU starves). The time of a validation is excluded.
    ``perf/rank_tokens_per_s_min`` / ``_max``: the slowest and fastest rank's own token
    rate (a slow rank, or one fed longer batches, shows); ``data/padding_waste``: the share
    of the batch's token grid that is padding. The rates are updated every step and logged
    on logging steps (the progress bar shows the last logged ones)."""

    def __init__(self, meta: OmniModel | None = None, smoothing: float = 0.9) -> None:
        """``meta``: the run's model on the meta device (built here if not given)."""
        self._meta = meta
        self.smoothing = smoothing
        self._last: float | None = None
        self._rates: dict[str, float] = {}
        self._flops: BatchFlops | None = None
        self._peak: float | None = None
        self._wait = 0.0  # seconds between the previous batch's end and this batch's start

    def on_fit_start(self, trainer, pl_module) -> None:
        from omnitrain.model.meta import meta_model

        cfg = pl_module.cfg
        meta = self._meta or meta_model(cfg)  # shapes only: works under any sharding
        self._flops = BatchFlops(meta, cfg)
        self._peak = device_peak_flops(cfg)

    def on_train_batch_start(self, trainer, pl_module, batch: Batch, batch_idx: int) -> None:
        now = time.perf_counter()
        self._wait = now - self._last if self._last is not None else 0.0
        if self._last is None:
            self._last = now

    def on_validation_end(self, trainer, pl_module) -> None:
        self._last = None  # the next step's rates and wait start after the validation

    def on_train_batch_end(self, trainer, pl_module, outputs, batch: Batch, batch_idx: int) -> None:
        now = time.perf_counter()
        dt = max(now - self._last, 1e-9) if self._last is not None else 1e-9
        self._last = now
        world = trainer.world_size
        if isinstance(batch, Batch):
            flops = self._flops(batch)
            current = {
                "perf/samples_per_s": int(batch.input_ids.shape[0]) * world / dt,
                "perf/tokens_per_s": batch.num_tokens * world / dt,
                "perf/rank_tokens_per_s": batch.num_tokens / dt,
                "perf/tflops_per_device": flops / dt / 1e12,
                "perf/data_wait": min(1.0, self._wait / dt),
                "data/padding_waste": padding_waste(batch),
            }
            if self._peak:
                current["perf/mfu"] = flops / dt / self._peak
        else:  # the vocoder stage: (mel, wave) segments
            current = {"perf/samples_per_s": int(batch[0].shape[0]) * world / dt,
                       "perf/data_wait": min(1.0, self._wait / dt)}
        for key, value in current.items():
            old = self._rates.get(key)
            self._rates[key] = value if old is None else self.smoothing * old + (1 - self.smoothing) * value
        if not will_log(trainer):  # each LightningModule.log costs ~0.4 ms of host time
            return
        rates = dict(self._rates)
        own = rates.pop("perf/rank_tokens_per_s", None)
        if own is not None:  # every rank logs on the same steps: one small all-reduce there
            rates["perf/rank_tokens_per_s_min"], rates["perf/rank_tokens_per_s_max"] = slowest_fastest(
                own, pl_module.device)
        for key, value in rates.items():
            pl_module.log(key, value, prog_bar=key in ("perf/tokens_per_s", "perf/mfu"))
        if torch.cuda.is_available() and pl_module.device.type == "cuda":  # what `omnitrain plan` predicts
            pl_module.log("perf/max_memory_gib", torch.cuda.max_memory_allocated(pl_module.device) / 2**30)


def slowest_fastest(value: float, device: torch.device) -> tuple[float, float]:
    """The least and greatest ``value`` over the ranks (every rank must call it)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value, value
    both = torch.tensor([value, -value], dtype=torch.float64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    return -float(both[1]), float(both[0])
