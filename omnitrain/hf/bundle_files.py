"""The files around a bundle's weights: config, manifest (the format ``omnitrain.bundle``
reads), and the ``hf/`` folder an import keeps for ``export --format hf``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from omnitrain.bundle import write_manifest
from omnitrain.config.typed import RunConfig

HF_DIR = "hf"  # inside a bundle: what import-hf kept (config.json, processor files, kept tensors)
KEPT = "kept.safetensors"
SOURCE = "source.json"
REFERENCE_MELS = "reference_mels.safetensors"  # {voice: (frames, n_mels)}: generate's default reference


def write_bundle_files(out: Path, cfg: RunConfig, source: str, parameters: int,
                       extra: dict[str, Any] | None = None) -> None:
    """config.yaml and manifest.json (sha256 of every file) of the bundle in ``out``."""
    OmegaConf.save(OmegaConf.create(cfg.to_dict()), out / "config.yaml")
    write_manifest(out, cfg, source, parameters, extra)


def hf_source(bundle: Path) -> Path | None:
    """The ``hf/`` folder of a bundle made by import-hf, or None."""
    folder = Path(bundle) / HF_DIR
    return folder if (folder / SOURCE).is_file() else None
