"""``data.log_samples=true``: which samples every optimizer step trained on, per rank.

Every rank appends one JSON line per optimizer step to ``<run_dir>/data_log/rank-<R>.jsonl``:
``{"step": <global step>, "epoch": <pass>, "keys": ["<shard url>:<sample __key__>", ...]}``
with every sample of the step's micro-batches (each of a packed row; skipped bad samples
are not there), and ``"repeats"`` for samples trained again to even out the ranks. A
resumed run first drops the lines of steps after its checkpoint (they are trained again),
then appends, so the file always tells what the weights saw. Users audit the data order
with it; the tests prove exact epochs with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L


class SampleLog(L.Callback):
    def __init__(self, run_dir: str | Path) -> None:
        self.folder = Path(run_dir) / "data_log"
        self.file = None
        self.step: int | None = None  # the step whose samples are being gathered
        self.line: dict = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"rank-{trainer.global_rank}.jsonl"
        if path.exists():  # a resumed run: steps from the checkpoint on are trained again
            keep = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line)["step"] < trainer.global_step]
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in keep))
            os.replace(tmp, path)
        self.file = open(path, "a")  # noqa: SIM115 -- closed in teardown

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.step != trainer.global_step:
            self.step, self.line = trainer.global_step, {"step": trainer.global_step, "epoch": None, "keys": []}
        stream = batch.stream or {}
        self.line["epoch"] = stream.get("pass")
        self.line["repeats" if stream.get("repeat") else "keys"] = (
            self.line.get("repeats" if stream.get("repeat") else "keys", []) + list(batch.keys))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.file is not None and self.step is not None and trainer.global_step != self.step:
            self.file.write(json.dumps(self.line) + "\n")
            self.file.flush()
            self.step = None

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
