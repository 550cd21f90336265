"""Lightning's checkpoint writer without its detour through ``$TMPDIR``.

``TorchCheckpointIO`` writes through an fsspec transaction whose temporary file lives in
``$TMPDIR``; on a cluster the run folder is on another filesystem, so the final "rename"
is a copy that a kill leaves half written over the old file. This writer saves straight
to the path it is given, which ``StepCheckpoints`` makes a temporary name beside the
checkpoint and renames into place once the file is flushed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from omnitrain.checkpoints.atomic import write_file_atomically


class DirectCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomically(path, lambda f: torch.save(checkpoint, f))
