"""The files around a bundle's weights: config, manifest (the format ``omnitrain.bundle``
reads), and the ``hf/`` folder an import keeps for ``export --format hf``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

import omnitrain
from omnitrain.bundle import FORMAT, FORMAT_VERSION
from omnitrain.checksums import sha256_file
from omnitrain.config.typed import RunConfig
from omnitrain.registry import SLOTS, registry

HF_DIR = "hf"  # inside a bundle: what import-hf kept (config.json, processor files, kept tensors)
KEPT = "kept.safetensors"
SOURCE = "source.json"
REFERENCE_MELS = "reference_mels.safetensors"  # {voice: (frames, n_mels)}: generate's default reference


def write_bundle_files(out: Path, cfg: RunConfig, source: str, parameters: int,
                       extra: dict[str, Any] | None = None) -> None:
    """config.yaml and manifest.json (sha256 of every file) of the bundle in ``out``."""
    OmegaConf.save(OmegaConf.create(cfg.to_dict()), out / "config.yaml")
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source_checkpoint": source,
        "versions": {"omnitrain": omnitrain.__version__, "torch": torch.__version__},
        "plugins": {
            slot: {"name": cfg.slot(slot).name, "origin": registry(slot).get(cfg.slot(slot).name).origin}
            for slot in SLOTS
        },
        "parameters": parameters,
        **(extra or {}),
        "files": {str(p.relative_to(out)): sha256_file(p) for p in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))


def hf_source(bundle: Path) -> Path | None:
    """The ``hf/`` folder of a bundle made by import-hf, or None."""
    folder = Path(bundle) / HF_DIR
    return folder if (folder / SOURCE).is_file() else None
