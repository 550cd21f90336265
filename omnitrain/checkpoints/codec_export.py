"""``omnitrain export`` of a ``task=codec`` run: not a model bundle but a codec folder
(``codec.json``: the plugin, its settings and the mel it reads; ``model.safetensors``: the
network), which ``codec.path=DIR`` or ``--codec DIR`` (data demo / pack / encode) reads."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from omnitrain.checkpoints.base import CheckpointReader
from omnitrain.config.typed import RunConfig
from omnitrain.registry import build


def export_codec(reader: CheckpointReader, cfg: RunConfig, out: Path) -> Path:
    codec = build("codec", cfg.codec)
    expected = codec.network().state_dict()
    found = reader.tensors()
    missing = sorted(set(expected) - set(found))
    if missing:
        raise ValueError(f"this task=codec checkpoint lacks {missing[:5]} of codec={cfg.codec.name}'s network")
    weights = {n: torch.zeros(found[n].numel, dtype=found[n].dtype) for n in expected}

    def sink(name: str, offset: int, piece: torch.Tensor) -> None:
        if name in weights:
            weights[name][offset:offset + piece.numel()] = piece.reshape(-1)

    reader.stream(sink)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({n: w.reshape(expected[n].shape).float().contiguous() for n, w in weights.items()},
              str(out / "model.safetensors"))
    (out / "codec.json").write_text(json.dumps(codec.describe(), indent=1) + "\n")
    return out
