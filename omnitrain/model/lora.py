"""LoRA on the model's slots (``lora:`` config section): adding adapters when the model
is built, freezing the rest for training, and the two ways a LoRA run leaves training:
merged into the base weights (``export``: a plain model) or as adapter tensors alone
(``export --adapter-only``). The layer itself is ``omnitrain.nn.lora``.

Training checkpoints hold the whole model, adapters included, so resume and ``init_from``
work as for any run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file
from torch import nn

from omnitrain.checkpoints import open_checkpoint
from omnitrain.checkpoints.base import Sink, TensorSpec
from omnitrain.checkpoints.safetensors_stream import SafetensorsStreamWriter
from omnitrain.checksums import sha256_file
from omnitrain.config.schema import LoraConfig, schema_node
from omnitrain.nn.lora import (
    adapter_base,
    add_lora,
    is_adapter,
    merged_piece,
    train_adapters_only,
)

ADAPTER_FORMAT = "omnitrain-lora-adapter"
ADAPTER_FILE = "adapter.safetensors"


def apply_lora(model: nn.Module, cfg: LoraConfig) -> dict[str, list[str]]:
    """Adapters on the targeted Linear layers of every slot in ``cfg.slots`` (while the
    model is built: under ``zero.Init`` and on the meta device alike)."""
    return {slot: add_lora(getattr(model, slot), cfg.targets, cfg.rank, cfg.alpha, cfg.dropout,
                           where=f"slot '{slot}'", root=model)
            for slot in cfg.slots}


def freeze_for_lora(model: nn.Module, cfg: LoraConfig) -> None:
    """In each LoRA slot only the adapters (and ``lora.trainable`` matches) train."""
    for slot in cfg.slots:
        train_adapters_only(getattr(model, slot), cfg.trainable, where=f"slot '{slot}'")


def lora_trains(cfg: LoraConfig, slot: str, name: str) -> bool:
    """Whether parameter ``name`` (relative to ``slot``) trains under ``cfg``: every
    parameter outside LoRA slots, adapters and ``lora.trainable`` matches inside them
    (what ``omnitrain plan`` counts as carrying gradients and optimizer state)."""
    return slot not in cfg.slots or is_adapter(name) or any(fnmatchcase(name, k) for k in cfg.trainable)


def lora_config(section: Mapping[str, Any] | DictConfig | None) -> LoraConfig:
    """A stored config's ``lora`` section (absent in runs from before LoRA: off)."""
    return OmegaConf.to_object(OmegaConf.merge(schema_node(LoraConfig), section or {}))


def merged_stream(specs: dict[str, TensorSpec], stream: Callable[[Sink], None], cfg: LoraConfig
                  ) -> tuple[dict[str, TensorSpec], Callable[[Sink], None]]:
    """A checkpoint's tensor stream with every adapter folded into its base weight
    (``W + alpha/rank * B @ A``) and the adapter tensors left out: the specs and stream
    of the plain model. The stream is read twice: once for the adapters (small, held
    whole), then piece by piece for everything else, so memory stays near one piece."""
    adapters = {n for n in specs if is_adapter(n)}
    plain = {n: s for n, s in specs.items() if n not in adapters}
    layers = sorted({n[:-2] for n in adapters})  # each adapter's name without .A / .B
    for layer in layers:
        for name in (f"{layer}.A", f"{layer}.B", adapter_base(layer)):
            if name not in specs:
                raise ValueError(f"the checkpoint has adapters for '{adapter_base(layer)}' but no '{name}'")
    scale = cfg.alpha / cfg.rank

    def run(sink: Sink) -> None:
        held = {n: torch.zeros(specs[n].numel, dtype=torch.float32) for n in adapters}

        def collect(name: str, offset: int, piece: torch.Tensor) -> None:
            if name in held:
                held[name][offset:offset + piece.numel()] = piece.float()

        stream(collect)
        factors = {adapter_base(layer): (held[f"{layer}.A"].view(specs[f"{layer}.A"].shape),
                                         held[f"{layer}.B"].view(specs[f"{layer}.B"].shape))
                   for layer in layers}

        def merge(name: str, offset: int, piece: torch.Tensor) -> None:
            if name in adapters:
                return
            if name in factors:
                a, b = factors[name]
                piece = merged_piece(piece, offset, a.shape[-1], a, b, scale).to(plain[name].dtype)
            sink(name, offset, piece)

        stream(merge)

    return plain, run


def export_adapter(checkpoint: Path, out: Path) -> Path:
    """Only the adapter tensors of a LoRA run (``adapter.safetensors``), with the run's
    config (``config.yaml``: the base model and the ``lora`` section that built them)
    and ``adapter.json`` (format, LoRA settings, sha256 of every file)."""
    reader = open_checkpoint(checkpoint)
    raw = reader.config()
    lora = lora_config(raw.get("lora"))
    if not lora.slots:
        raise ValueError(f"checkpoint '{checkpoint}' was not trained with LoRA (lora.slots is empty): it has "
                         "no adapters; export the whole model without --adapter-only")
    specs = {n: s for n, s in reader.tensors().items() if is_adapter(n)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with SafetensorsStreamWriter(out / ADAPTER_FILE, specs) as writer:
        reader.stream(lambda name, offset, piece: writer.write(name, offset, piece) if name in specs else None)
    OmegaConf.save(raw, out / "config.yaml")
    files = {p: sha256_file(out / p) for p in (ADAPTER_FILE, "config.yaml")}
    meta = {"format": ADAPTER_FORMAT, "format_version": 1,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "source_checkpoint": str(Path(checkpoint).resolve()), "lora": dataclasses.asdict(lora),
            "tensors": len(specs), "parameters": sum(s.numel for s in specs.values()), "files": files}
    (out / "adapter.json").write_text(json.dumps(meta, indent=2))
    return out


def load_adapter(model: nn.Module, directory: Path) -> int:
    """Load ``export --adapter-only``'s tensors into a model built with the same ``lora``
    section (its base weights loaded first); returns how many tensors were loaded."""
    tensors = load_file(str(Path(directory) / ADAPTER_FILE))
    own = {n for n in model.state_dict() if is_adapter(n)}
    if set(tensors) != own:
        raise ValueError(f"adapter '{directory}' does not fit this model: missing {sorted(own - set(tensors))[:5]}, "
                         f"unexpected {sorted(set(tensors) - own)[:5]} (build it with the adapter's config.yaml lora section)")
    model.load_state_dict(tensors, strict=False)
    return len(tensors)
