"""What a plugin provides to read and write one Hugging Face model family.

The core never names a model: ``import-hf`` reads ``config.json``'s ``model_type`` and
asks the format registered for it. A format maps names and shapes tensor by tensor, so
the core can stream (one tensor in memory at a time).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from omnitrain.checkpoints.base import TensorSpec
from omnitrain.name_registry import Registry


class HFError(ValueError):
    """A folder or model that cannot be converted; the message says what to do."""


@dataclass
class ImportPlan:
    """What a format decides from a folder's config before any tensor is read."""

    overrides: list[str]  # Hydra overrides that build the matching omnitrain model
    extra_files: list[str] = field(default_factory=list)  # files to keep for export (config, processor, ...)
    tokenizer_files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said to the user


# A write into the bundle: (omnitrain name, element offset, tensor piece)
Piece = tuple[str, int, Tensor]


class HFFormat(ABC):
    """One model family's conversion (e.g. the qwen_omni plugins' ``hf_format``)."""

    model_types: tuple[str, ...] = ()

    @abstractmethod
    def plan(self, folder: Path, config: dict[str, Any], keys: dict[str, TensorSpec]) -> ImportPlan:
        """The omnitrain config for this folder (``keys``: every tensor of its shards)."""

    @abstractmethod
    def import_tensor(self, key: str, tensor: Tensor) -> list[Piece]:
        """Where one checkpoint tensor goes ([] when no omnitrain tensor holds it)."""

    def keep(self, key: str) -> bool:
        """Keep the checkpoint tensor as it is for ``export --format hf`` (rows the
        omnitrain model does not hold, tensors no forward reads)."""
        return False

    def import_extra(self, folder: Path) -> list[Piece]:
        """Tensors that come from files other than the shards (e.g. speaker vectors)."""
        return []

    def reference_mels(self, folder: Path) -> dict[str, Tensor]:
        """Each voice's reference utterance as mel frames (frames, n_mels), if the folder has them."""
        return {}

    @abstractmethod
    def export_specs(self, cfg: Any, source: Path | None, own: dict[str, TensorSpec],
                     kept: dict[str, TensorSpec]) -> tuple[dict[str, TensorSpec], dict[str, Any]]:
        """(every HF tensor's spec, config.json) for a model of config ``cfg``.
        ``source``: the import's kept files (``hf/``), if the weights came from one."""

    @abstractmethod
    def export_tensor(self, key: str, get: Callable[[str], Tensor], kept: Callable[[str], Tensor]) -> Tensor:
        """HF tensor ``key`` from omnitrain tensors (``get``) and kept ones (``kept``)."""

    def export_files(self, cfg: Any, source: Path | None, out: Path, get: Callable[[str], Tensor]) -> list[str]:
        """Write the non-weight files (speaker dictionary, processor config); says what it wrote."""
        return []

    def unsupported(self, cfg: Any) -> list[str]:
        """Slots whose plugin has no counterpart in this format (export refuses, naming them)."""
        return []


#: formats by the transformers ``model_type`` they read and write
FORMATS: Registry[HFFormat] = Registry("Hugging Face format for model_type")


def register_format(fmt: HFFormat) -> HFFormat:
    for model_type in fmt.model_types:
        FORMATS.add(model_type, fmt)
    return fmt


def find_format(model_type: str) -> HFFormat:
    from omnitrain.plugin_loading import load_entry_points

    load_entry_points()
    if model_type not in FORMATS:
        raise HFError(f"no importer for Hugging Face model_type '{model_type}'; known: {FORMATS.names()}")
    return FORMATS.get(model_type)


def is_hf_folder(path: Path) -> bool:
    """A transformers ``save_pretrained`` folder (config.json with a model_type, safetensors)."""
    path = Path(path)
    config = path / "config.json"
    if not path.is_dir() or not config.is_file():
        return False
    try:
        has_type = "model_type" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return has_type and (any(path.glob("*.safetensors")) or (path / "model.safetensors.index.json").exists())


def shards(folder: Path) -> list[Path]:
    """The folder's safetensors shards, in the index's order (or the single file)."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        names = list(dict.fromkeys(json.loads(index.read_text())["weight_map"].values()))
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise HFError(f"'{folder}': the index names shards that are not there: {missing[:3]}")
        return [folder / n for n in names]
    single = folder / "model.safetensors"
    if single.exists():
        return [single]
    raise HFError(f"'{folder}' has neither model.safetensors.index.json nor model.safetensors")


def iter_specs(files: list[Path]) -> Iterator[tuple[str, TensorSpec, Path]]:
    """Every tensor's name, shape and dtype, read from the shard headers only."""
    from safetensors import safe_open

    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                s = f.get_slice(key)
                yield key, TensorSpec(tuple(s.get_shape()), _dtype(s.get_dtype())), path


def _dtype(name: str):
    import torch

    table = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
             "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
             "U8": torch.uint8, "BOOL": torch.bool}
    if name not in table:
        raise HFError(f"safetensors dtype {name} is not supported")
    return table[name]
