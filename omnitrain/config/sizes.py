"""Model sizes, written once per size and applied to whichever plugin fills a slot.

``configs/size/<name>.yaml`` holds, for each slot, one row per plugin (plugins name their
widths their own way: ``d_model`` for Whisper, ``hidden_size`` for the ViT). A size may
start from another (``defaults: [omni7b]``). Each row is stored in Hydra's ConfigStore
as ``size_<slot>/<size>_<plugin>`` and ``configs/train.yaml`` selects it with a defaults
interpolation (``${size}_${audio_encoder}``), so the row lands on top of the plugin's
defaults and *under* a recipe's and the command line's own values: ``size=tiny
thinker.layers=2`` means what it says.
"""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("omnitrain")

SIZED_SLOTS = ("audio_encoder", "vision_encoder", "thinker", "talker", "dit", "vocoder")


def size_dir(config_dir: Path) -> Path:
    return config_dir / "size"


def load_size(directory: Path, name: str, seen: tuple[str, ...] = ()) -> DictConfig:
    """The table of size ``name`` with the sizes it starts from merged under it."""
    path = directory / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in directory.glob("*.yaml")))
        raise FileNotFoundError(f"size '{name}' has no file {path}; sizes: {known}")
    if name in seen:
        raise ValueError(f"sizes start from each other in a circle: {' -> '.join((*seen, name))}")
    table = OmegaConf.load(path)
    bases = [b for b in table.pop("defaults", []) if b != "_self_"]
    merged = OmegaConf.create()
    for base in bases:
        merged = OmegaConf.merge(merged, load_size(directory, str(base), (*seen, name)))
    merged = OmegaConf.merge(merged, table)
    unknown = set(merged) - set(SIZED_SLOTS)
    if unknown:
        raise ValueError(f"{path}: {sorted(unknown)} are not sized slots; use {list(SIZED_SLOTS)}")
    return merged


def size_tables(config_dir: Path) -> dict[str, DictConfig]:
    directory = size_dir(config_dir)
    return {p.stem: load_size(directory, p.stem) for p in sorted(directory.glob("*.yaml"))}


def register_sizes(config_dir: Path) -> None:
    """Store every (size, slot, plugin) row in the ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    for size, table in size_tables(config_dir).items():
        for slot, rows in table.items():
            for plugin, row in rows.items():
                store.store(group=f"size_{slot}", name=f"{size}_{plugin}", node=row)


def report_unsized(config_dir: Path, size: str, cfg: DictConfig) -> list[str]:
    """Slots the chosen size covers for other plugins but not for the one chosen: that
    plugin keeps its own defaults (said once in the log, since it is rarely meant)."""
    table = load_size(size_dir(config_dir), size)
    notes = []
    for slot, rows in table.items():
        plugin = cfg[slot].get("name") if slot in cfg else None
        if plugin is not None and plugin not in rows:
            notes.append(f"size={size} has no {slot} row for plugin '{plugin}' (it has "
                         f"{sorted(rows)}): {slot} keeps the plugin's own defaults")
    for note in notes:
        log.warning(note)
    return notes
