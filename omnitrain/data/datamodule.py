"""LightningDataModule over the webdataset pipeline."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from omnitrain.config.typed import RunConfig
from omnitrain.data.pipeline import make_pipeline
from omnitrain.data.shards import resolve_shards
from omnitrain.registry import build


class StepPositionedLoader(DataLoader):
    """The training loader. Its position after a resume comes from the global step
    (``TrainEpochs``), so it needs no saved state; having ``state_dict`` tells Lightning
    that a mid-epoch checkpoint resumes exactly (and stops its warning that it would not)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class OmniDataModule(L.LightningDataModule):
    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pad_id = build("tokenizer", cfg.tokenizer).special_id("pad")

    def check(self) -> None:
        """Fail before any expensive work when shards are missing."""
        resolve_shards(self.cfg.data.train_shards, "data.train_shards")
        if self.cfg.data.val_shards:
            resolve_shards(self.cfg.data.val_shards, "data.val_shards")

    def _loader(self, split: str, workers: int, start_batch: int = 0) -> DataLoader:
        cls = StepPositionedLoader if split == "train" else DataLoader
        return cls(
            make_pipeline(self.cfg, split, self.pad_id, start_batch),
            batch_size=None,
            num_workers=workers,
            # torchaudio/OpenMP threads can deadlock in forked workers
            multiprocessing_context="forkserver" if workers > 0 else None,
            persistent_workers=workers > 0,
            prefetch_factor=self.cfg.data.prefetch_factor if workers > 0 else None,
        )

    def train_start_batch(self) -> int:
        """Batches per rank already trained on: the data position is a function of the
        global step (restored from the checkpoint before Lightning asks for the loader)."""
        trainer = self.trainer
        if trainer is None:
            return 0
        return int(trainer.global_step) * int(trainer.accumulate_grad_batches)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.cfg.data.num_workers, self.train_start_batch())

    def val_dataloader(self) -> DataLoader | list:
        if not self.cfg.data.val_shards:
            return []
        return self._loader("val", self.cfg.data.val_num_workers)
