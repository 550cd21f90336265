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

import copy
import logging
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from omnitrain.config.yaml_cache import load_yaml

log = logging.getLogger("omnitrain")

SIZED_SLOTS = ("audio_encoder", "vision_encoder", "thinker", "talker", "dit", "vocoder", "position")


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
    table = load_yaml(path)
    bases = [b for b in table.pop("defaults", []) if b != "_self_"]
    merged = OmegaConf.create()
    for base in bases:
        merged = OmegaConf.merge(merged, load_size(directory, str(base), (*seen, name)))
    merged = OmegaConf.merge(merged, table)
    unknown = set(merged) - set(SIZED_SLOTS)
    if unknown:
        raise ValueError(f"{path}: {sorted(unknown)} are not sized slots; use {list(SIZED_SLOTS)}")
    return merged


_TABLES: dict[Path, tuple[tuple[tuple[str, bytes], ...], dict[str, DictConfig]]] = {}


def _texts(directory: Path) -> tuple[tuple[str, bytes], ...]:
    return tuple((p.name, p.read_bytes()) for p in sorted(directory.glob("*.yaml")))


def _merged(directory: Path) -> tuple[tuple[tuple[str, bytes], ...], dict[str, DictConfig]]:
    """(the size files' texts, every size's merged table), merged again only when a text
    changed; the cached tables themselves: callers must not change them."""
    texts = _texts(directory)
    hit = _TABLES.get(directory)
    if hit is None or hit[0] != texts:
        hit = (texts, {Path(name).stem: load_size(directory, Path(name).stem) for name, _ in texts})
        _TABLES[directory] = hit
    return hit


def size_tables(config_dir: Path) -> dict[str, DictConfig]:
    """Every size's merged table (a copy); merged again only when a size file's text changed
    (every compose asks, see ``omnitrain.config.yaml_cache``)."""
    return copy.deepcopy(_merged(size_dir(config_dir))[1])


_STORED: dict[Path, tuple[tuple[str, bytes], ...]] = {}  # the size files ConfigStore holds rows of


def register_sizes(config_dir: Path) -> None:
    """Store every (size, slot, plugin) row in the ConfigStore (idempotent; skipped while
    the size files are as they were when stored: every compose calls this)."""
    directory = size_dir(config_dir)
    texts, tables = _merged(directory)
    if _STORED.get(directory) == texts:
        return
    store = ConfigStore.instance()
    for size, table in tables.items():
        for slot, rows in table.items():
            for plugin, row in rows.items():
                store.store(group=f"size_{slot}", name=f"{size}_{plugin}", node=row)  # stores a copy
    _STORED[directory] = texts


def report_unsized(config_dir: Path, size: str, cfg: DictConfig) -> list[str]:
    """Slots the chosen size covers for other plugins but not for the one chosen: that
    plugin keeps its own defaults (said once in the log, since it is rarely meant)."""
    tables = _merged(size_dir(config_dir))[1]  # read only
    table = tables[size] if size in tables else load_size(size_dir(config_dir), size)  # its error
    notes = []
    for slot, rows in table.items():
        plugin = cfg[slot].get("name") if slot in cfg else None
        if plugin is not None and plugin not in rows:
            notes.append(f"size={size} has no {slot} row for plugin '{plugin}' (it has "
                         f"{sorted(rows)}): {slot} keeps the plugin's own defaults")
    for note in notes:
        log.warning(note)
    return notes
