"""Start a training stage from a previous stage's weights (``init_from=...``).

Weights are copied where the name and shape match, slot by slot, so a stage may swap a
plugin (``talker=dual_track`` after a ``prefix`` run): that slot starts fresh and the
log says so. The optimizer and step count start fresh too (use ``resume`` to continue).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from omnitrain.checkpoints.safe_load import load_file

log = logging.getLogger("omnitrain")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Model weights from a training checkpoint (``model.*`` keys) or an exported bundle."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"init_from={path}: no such checkpoint or bundle")
    if path.is_dir():
        from safetensors.torch import load_file as load_safetensors

        if not (path / "model.safetensors").exists():
            raise FileNotFoundError(f"init_from={path}: a folder must be a bundle (model.safetensors)")
        return load_safetensors(str(path / "model.safetensors"))
    state = load_file(path)["state_dict"]
    return {k[len("model."):]: v for k, v in state.items() if k.startswith("model.")}


def load_matching(model: nn.Module, path: str | Path) -> dict[str, tuple[int, int]]:
    """Copy matching weights into ``model``; returns {slot: (loaded, total)} tensors."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file() and not (path / "manifest.json").is_file():
        raise FileNotFoundError(f"init_from={path}: this is a Hugging Face folder: run `omnitrain import-hf "
                                f"{path} BUNDLE` first, then init_from=BUNDLE")
    source = read_weights(path)
    own = model.state_dict()
    matched = {k: v for k, v in source.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise ValueError(f"init_from={path}: no weight matches this model (a different model?)")
    model.load_state_dict(matched, strict=False)
    total, loaded = Counter(k.split(".")[0] for k in own), Counter(k.split(".")[0] for k in matched)
    report = {slot: (loaded[slot], n) for slot, n in total.items()}
    fresh = [s for s, (got, n) in report.items() if got < n]
    log.warning("init_from %s: loaded %d/%d tensors; starting fresh (in part or whole): %s",
                path, len(matched), len(own), fresh or "nothing")
    return report
