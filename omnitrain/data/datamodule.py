"""LightningDataModule over the planned streams, with the training stream's position in
the checkpoint.

The position is counted here, in the main process, as batches reach the training step
(``on_before_batch_transfer``), never from what the loader workers have read ahead: a
checkpoint says how many batches the weights have seen (at the last optimizer-step
boundary), and the loader of the next epoch, or of a resumed run, starts exactly there
(``train_schedule``). Lightning asks for the loader every epoch (reloading it, so each
epoch's length is its own: it differs from pass to pass under token batching); the same
loader and workers serve every epoch, told where the epoch begins.
"""

from __future__ import annotations

import multiprocessing
import warnings

import lightning as L
from torch.utils.data import DataLoader

from omnitrain.config.typed import RunConfig
from omnitrain.data.pipeline import (
    Collate,
    split_index,
    train_layout,
    validation_plan,
    world_rank,
)
from omnitrain.data.planned_stream import PlannedStream, TrainStream
from omnitrain.data.shards import resolve_shards
from omnitrain.data.step_groups import group_steps
from omnitrain.data.train_schedule import TrainSchedule
from omnitrain.registry import build

# our streams' lengths are exact by construction (every worker's share is planned)
warnings.filterwarnings("ignore", message="Your `IterableDataset` has `__len__` defined")


class StreamLoader(DataLoader):
    """The training loader, made once and kept (its workers too) for the whole run.

    Lightning asks for the loader every epoch and then calls ``iter`` on it twice (once
    when it sets up the epoch's data, once when the epoch starts); an iterator not yet
    read from is handed out again instead of restarting the workers. Having ``state_dict``
    tells Lightning that a mid-epoch checkpoint resumes exactly (its warning says
    otherwise); the state itself is the data module's, counted where batches are trained on.
    """

    unread = None  # an iterator handed out and not read from yet

    def __init__(self, *args, accumulate: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.accumulate = accumulate  # each batch carries its optimizer step's totals (group_steps)

    def __iter__(self):
        if self.unread is None:
            self.unread = group_steps(self._batches(super().__iter__()), self.accumulate, len(self))
        return self.unread

    def _batches(self, batches):
        first = True
        for batch in batches:
            if first:
                self.unread, first = None, False
            yield batch

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class OmniDataModule(L.LightningDataModule):
    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pad_id = build("tokenizer", cfg.tokenizer).special_id("pad")
        self.schedule: TrainSchedule | None = None
        self.trained = 0  # training batches this rank has taken, over the whole run
        self._step: tuple[int | None, int] = (None, 0)  # (global step, ``trained`` when it began)
        self._saved: dict | None = None  # the checkpoint's stream state, until the loader is made
        self._train: StreamLoader | None = None

    def check(self) -> None:
        """Fail before any expensive work when shards are missing."""
        resolve_shards(self.cfg.data.train_shards, "data.train_shards")
        if self.cfg.data.val_shards:
            resolve_shards(self.cfg.data.val_shards, "data.val_shards")

    # ---- the position -------------------------------------------------------------------
    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        trainer = self.trainer
        if trainer is not None and trainer.training:
            if trainer.global_step != self._step[0]:
                self._step = (trainer.global_step, self.trained)
            self.trained += 1
        return batch

    def trained_at_step_boundary(self) -> int:
        """Batches in the weights: inside an optimizer step (a save on an exception), the
        step's micro-batches so far are not."""
        trainer = self.trainer
        if trainer is not None and self._step[0] is not None and trainer.global_step == self._step[0]:
            return self._step[1]
        return self.trained

    def state_dict(self) -> dict:
        if self.schedule is None:
            return {}
        return {"stream": self.schedule.state(self.trained_at_step_boundary())}

    def load_state_dict(self, state: dict) -> None:
        self._saved = state.get("stream")

    def _resumed_position(self) -> int:
        if self._saved:
            return int(self._saved["trained"])
        trainer = self.trainer
        if trainer is None:
            return 0
        # a checkpoint without stream state: the position its global step implies
        return int(trainer.global_step) * int(trainer.accumulate_grad_batches)

    # ---- loaders ------------------------------------------------------------------------
    def _loader(self, dataset, workers: int, cls: type[DataLoader] = DataLoader, persistent: bool = False
                ) -> DataLoader:
        import torch

        steps = {"accumulate": int(self.cfg.trainer.accumulate_grad_batches)} if cls is StreamLoader else {}
        return cls(
            dataset,
            batch_size=None,
            num_workers=workers,
            # torchaudio/OpenMP threads can deadlock in forked workers
            multiprocessing_context="forkserver" if workers > 0 else None,
            prefetch_factor=self.cfg.data.prefetch_factor if workers > 0 else None,
            persistent_workers=persistent,
            pin_memory=torch.cuda.is_available() and self.cfg.trainer.accelerator != "cpu",
            **steps,
        )

    def train_dataloader(self) -> DataLoader:
        """The loader for the epoch that starts at the batches trained so far."""
        cfg = self.cfg
        if self.schedule is None:
            self.trained = self._resumed_position()
            self.schedule = TrainSchedule.resume(split_index(cfg, "train"), train_layout(cfg),
                                                 cfg.data.epoch_batches, self._saved, self.trained, world_rank())
            self._saved = None
        epoch = self.schedule.epoch_at(self.trained)
        if self._train is None:
            workers = cfg.data.num_workers
            begin = multiprocessing.get_context("forkserver").RawValue("q", 0)  # seen by persistent workers
            stream = TrainStream(cfg, self.schedule, world_rank(), begin, 0, Collate(self.pad_id, cfg.data.pack_length))
            self._train = self._loader(stream, workers, StreamLoader, persistent=workers > 0)
        self._train.dataset.begin.value = self.trained
        self._train.dataset.length = epoch.length
        self._train.unread = None  # a new epoch: a new iterator
        return self._train

    def val_dataloader(self) -> DataLoader | list:
        cfg = self.cfg
        if not cfg.data.val_shards:
            return []
        index = split_index(cfg, "val")
        plan = validation_plan(cfg, index, cfg.data.val_num_workers)
        rank = world_rank()
        stream = PlannedStream(cfg, index, plan.for_rank(rank), rank, 0, plan.per_rank, plan.per_rank,
                               Collate(self.pad_id, cfg.data.pack_length))
        return self._loader(stream, cfg.data.val_num_workers)
