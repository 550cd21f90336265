"""``omnitrain export SRC OUT --format hf``: a bundle or training checkpoint -> a folder
transformers loads (``from_pretrained``), streamed.

A training checkpoint first goes through ``export_bundle`` (the same streaming, checks and
any merge step it applies), into a temporary bundle. The bundle's ``model.safetensors`` is
then memory-mapped and each transformers tensor is made from one or a few omnitrain tensors
(plus the tensors the import kept), cast to the dtype the release used, and written into
shards of at most ``max_shard_bytes``. The config.json, processor and tokenizer files come
from the import the model started from (``init_from=BUNDLE`` keeps that link).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors import safe_open

from omnitrain.bundle import export_bundle
from omnitrain.checkpoints.base import TensorSpec
from omnitrain.checkpoints.safetensors_stream import SafetensorsStreamWriter
from omnitrain.config.typed import RunConfig
from omnitrain.hf.bundle_files import KEPT, SOURCE, hf_source
from omnitrain.hf.formats import HFError, find_format, iter_specs
from omnitrain.run_config import load_config

SKIP = {SOURCE, KEPT, "config.json", "spk_dict.pt", "overrides.txt"}  # written here, or not part of a HF folder


def _source_of(bundle: Path, cfg: RunConfig, depth: int = 5) -> Path | None:
    """The ``hf/`` folder of the import this model descends from: the bundle's own, or
    that of the bundle its run started from (``init_from``), followed back a few stages."""
    found = hf_source(bundle)
    init = cfg.init_from
    while found is None and init and depth > 0:
        init_path = Path(str(init))
        found = hf_source(init_path) if init_path.is_dir() else None
        config = init_path / "config.yaml"
        init = OmegaConf.load(config).get("init_from") if found is None and config.is_file() else None
        depth -= 1
    return found


def export_hf(src: Path, out: Path, max_shard_bytes: int = 5 * 2**30) -> dict:
    """Write the transformers folder ``out``; returns a summary (shards, tensors, files)."""
    src, out = Path(src), Path(out)
    if out.exists() and any(out.iterdir()):
        raise HFError(f"'{out}' exists and is not empty; choose a new folder")
    if (src / "manifest.json").is_file():
        return _bundle_to_hf(src, out, max_shard_bytes)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".export-") as tmp:
        bundle = export_bundle(src, Path(tmp) / "bundle")
        return _bundle_to_hf(bundle, out, max_shard_bytes)


def _bundle_to_hf(bundle: Path, out: Path, max_shard_bytes: int) -> dict:
    cfg = load_config(OmegaConf.to_container(OmegaConf.load(bundle / "config.yaml"), resolve=True))
    source = _source_of(bundle, cfg)
    if source is None:
        raise HFError(f"'{bundle}' does not descend from an `omnitrain import-hf` bundle (no hf/ folder, "
                      "and init_from does not lead to one): export --format hf takes transformers' config and "
                      "the tensors omnitrain does not hold from there. Import the release first, then train "
                      "with init_from=BUNDLE")
    fmt = find_format(json.loads((source / SOURCE).read_text())["model_type"])
    bad = fmt.unsupported(cfg)
    if bad:
        raise HFError("transformers has no counterpart for: " + "; ".join(bad))
    weights = bundle / "model.safetensors"
    own = {k: s for k, s, _ in iter_specs([weights])}
    kept_path = source / KEPT
    kept = {k: s for k, s, _ in iter_specs([kept_path])}
    specs, config = fmt.export_specs(cfg, source, own, kept)
    groups = _shards(specs, max_shard_bytes)
    out.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    def read(path: Path, name: str) -> torch.Tensor:
        # opened per tensor: a map held open would keep every page it touched resident,
        # up to the whole bundle; this way the process holds about one tensor
        with safe_open(str(path), framework="pt") as f:
            return f.get_tensor(name)  # a copy: safetensors reads out of its map

    def get(name: str) -> torch.Tensor:
        if name not in own:
            raise HFError(f"the bundle has no tensor '{name}'")
        return read(weights, name)

    for n, group in enumerate(groups, 1):
        name = f"model-{n:05d}-of-{len(groups):05d}.safetensors" if len(groups) > 1 else "model.safetensors"
        with SafetensorsStreamWriter(out / name, {k: specs[k] for k in group}) as writer:
            for key in group:
                tensor = fmt.export_tensor(key, get, lambda k: read(kept_path, k))
                if tuple(tensor.shape) != specs[key].shape and tensor.numel() != specs[key].numel:
                    raise HFError(f"'{key}' came out {tuple(tensor.shape)}, transformers expects {specs[key].shape}")
                writer.write(key, 0, tensor.reshape(-1).to(specs[key].dtype))
                weight_map[key] = name
                del tensor
    files = fmt.export_files(cfg, source, out, get)
    if len(groups) > 1:
        total = sum(s.numel * torch.empty((), dtype=s.dtype).element_size() for s in specs.values())
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name not in SKIP:
            shutil.copy2(path, out / path.name)
            files.append(path.name)
    tokenizer_dir = Path(str(getattr(cfg.tokenizer, "path", "") or bundle / "tokenizer"))
    if not tokenizer_dir.is_dir():
        tokenizer_dir = bundle / "tokenizer"
    for path in sorted(tokenizer_dir.iterdir()):
        if path.is_file() and not (out / path.name).exists():
            shutil.copy2(path, out / path.name)
            files.append(path.name)
    return {"folder": str(out), "shards": len(groups), "tensors": len(specs), "files": sorted(files)}


def _shards(specs: dict[str, TensorSpec], max_bytes: int) -> list[list[str]]:
    """Keys in order, cut into groups of at most ``max_bytes`` (a bigger tensor alone)."""
    groups: list[list[str]] = [[]]
    size = 0
    for key, spec in specs.items():
        nbytes = spec.numel * torch.empty((), dtype=spec.dtype).element_size()
        if groups[-1] and size + nbytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append(key)
        size += nbytes
    return groups
