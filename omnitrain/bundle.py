"""Inference bundles: export a training checkpoint, load it back for generation.

A bundle is a folder::

    model.safetensors   fp32 weights of the whole Thinker-Talker model
    config.yaml         the resolved training config (names the plugin of every slot)
    tokenizer/          files written by the tokenizer plugin
    plugins/            copies of plugins that were given as .py files
    manifest.json       format, versions, plugin origins, sha256 of every file
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_model

import omnitrain
from omnitrain.checkpoints import CheckpointError, CheckpointReader, TensorSpec, open_checkpoint
from omnitrain.checkpoints.base import export_dtype
from omnitrain.checkpoints.safetensors_stream import SafetensorsStreamWriter
from omnitrain.checksums import sha256_cached, sha256_file
from omnitrain.config.typed import RunConfig
from omnitrain.model.lora import merged_stream
from omnitrain.model.meta import meta_model, unique_tensors
from omnitrain.model.omni_model import OmniModel
from omnitrain.registry import SLOTS, build, registry
from omnitrain.run_config import load_config
from omnitrain.slots import PretrainedCodec, TrainableCodec

FORMAT = "omnitrain-bundle"
FORMAT_VERSION = 1


class BundleError(ValueError):
    pass


def _open(path: Path) -> CheckpointReader:
    try:
        return open_checkpoint(path)
    except CheckpointError as exc:
        raise BundleError(str(exc)) from exc


def check_tensors(cfg: RunConfig, found: dict[str, TensorSpec], source: str) -> dict[str, TensorSpec]:
    """The model's tensors for ``cfg`` (built on the meta device), checked against a
    checkpoint's; raises ``BundleError`` naming the first differences."""
    expected = {n: TensorSpec(tuple(t.shape), export_dtype(t.dtype))
                for n, t in unique_tensors(meta_model(cfg)).items()}
    problems = [f"{n}: {found[n].shape} in the checkpoint, {s.shape} in the model"
                for n, s in expected.items() if n in found and found[n].shape != s.shape]
    missing = [n for n in expected if n not in found]
    unexpected = [n for n in found if n not in expected]
    if problems or missing or unexpected:
        raise BundleError(
            f"checkpoint '{source}' does not match its config's model: shapes {problems[:5]}, "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return expected


def _bundle_plugins(cfg: RunConfig, out: Path) -> list[str]:
    """Copy .py plugins into the bundle and point the config at the copies."""
    specs = []
    for spec in cfg.plugins:
        spec = str(spec)
        if spec.endswith(".py"):
            (out / "plugins").mkdir(exist_ok=True)
            shutil.copy2(spec, out / "plugins" / Path(spec).name)
            specs.append(f"plugins/{Path(spec).name}")
        else:
            specs.append(spec)
    return specs


def _readers_of(stored: dict[str, Any], codec_path: str) -> list[str]:
    """The codec and the slots whose ``path`` is the codec's (a vocoder that decodes with the
    codec's own model): their paths move with the codec's copy in the bundle."""
    return [slot for slot in SLOTS if isinstance(stored.get(slot), dict) and stored[slot].get("path") == codec_path]


def _bundle_codec(cfg: RunConfig, out: Path) -> str | None:
    """Copy a pretrained (or trained, ``TrainableCodec`` with a ``path``) codec's local files
    into the bundle (``codec/``)."""
    cls = registry("codec").get(cfg.codec.name).cls
    trained = issubclass(cls, TrainableCodec) and bool(cfg.codec.path)  # the contract: trained = has a path
    if not (issubclass(cls, PretrainedCodec) or trained):
        return None
    src = Path(cfg.codec.path)
    if src.is_dir():
        shutil.copytree(src, out / "codec", dirs_exist_ok=True)
        return "codec"
    (out / "codec").mkdir(exist_ok=True)
    shutil.copy2(src, out / "codec" / src.name)
    return f"codec/{src.name}"


def export_bundle(checkpoint: Path, out: Path) -> Path:
    """Checkpoint (a file, or a DeepSpeed/FSDP sharded folder) -> bundle, streaming the
    weights into ``model.safetensors`` so host memory stays near one shard."""
    reader = _open(checkpoint)
    cfg = load_config(reader.config())
    if cfg.task == "codec":  # a trained codec: its own folder, read by codec.path / --codec
        from omnitrain.checkpoints.codec_export import export_codec

        return export_codec(reader, cfg, Path(out))
    found = reader.tensors()
    specs = check_tensors(cfg, found, str(checkpoint))
    stream = reader.stream
    if cfg.lora.slots:  # LoRA adapters folded into their base weights: the bundle is a plain model
        specs, stream = merged_stream(specs, reader.stream, cfg.lora)
        cfg = cfg.replace(lora=dataclasses.replace(cfg.lora, slots=[]))
    parameters = sum(p.numel() for p in meta_model(cfg).parameters())  # before paths turn bundle-relative
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with SafetensorsStreamWriter(out / "model.safetensors", specs) as writer:
            stream(writer.write)
    except CheckpointError as exc:
        raise BundleError(f"checkpoint '{checkpoint}': {exc}") from exc
    stored = cfg.to_dict()
    stored["plugins"] = _bundle_plugins(cfg, out)
    codec_path = _bundle_codec(cfg, out)
    if codec_path is not None:  # every slot that reads the codec's files (a codes vocoder) reads the copy
        for slot in _readers_of(stored, str(cfg.codec.path)):
            stored[slot]["path"] = codec_path
    OmegaConf.save(OmegaConf.create(stored), out / "config.yaml")
    (out / "tokenizer").mkdir(exist_ok=True)
    build("tokenizer", cfg.tokenizer).save(out / "tokenizer")
    write_manifest(out, cfg, str(Path(checkpoint).resolve()), parameters)
    return out


def write_manifest(out: Path, cfg: RunConfig, source: str, parameters: int,
                   extra: dict[str, Any] | None = None) -> None:
    """``manifest.json``: versions, plugin origins and the sha256 of every file in ``out``
    (checked when the bundle is loaded)."""
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


def load_bundle(directory: Path, verify: bool = True, trust_plugins: bool = False,
                device: str | torch.device | None = None,
                dtype: torch.dtype | None = None) -> tuple[OmniModel, RunConfig]:
    """The bundle's model and config, its weights on ``device`` (default the CPU) in
    ``dtype`` (default as stored: fp32). Every file's checksum is verified against the
    manifest (once per file version: ``omnitrain.checksums.sha256_cached``). A bundle that
    carries plugin code (``plugins/*.py``, copied from a run's ``plugins=[file.py]``) is
    refused unless ``trust_plugins``: importing it runs that code."""
    directory = Path(directory)
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        raise BundleError(f"'{directory}' is not an omnitrain bundle (no manifest.json); create one with `omnitrain export`")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
        raise BundleError(f"'{directory}': unsupported bundle format {manifest.get('format')} v{manifest.get('format_version')}")
    if verify:
        missing = [directory / n for n in manifest["files"] if not (directory / n).is_file()]
        if missing:
            raise BundleError(f"bundle file '{missing[0]}' is missing (the manifest lists it): copy the whole bundle")
        digests = sha256_cached([directory / n for n in manifest["files"]])
        for name, digest in manifest["files"].items():
            if digests[directory / name] != digest:
                raise BundleError(f"bundle file '{directory / name}' does not match its checksum in the manifest: "
                                  "it changed or was damaged since export; export the bundle again")
    stored = OmegaConf.to_container(OmegaConf.load(directory / "config.yaml"), resolve=True)
    carried = [str(s) for s in stored.get("plugins") or [] if str(s).startswith("plugins/")]
    if carried and not trust_plugins:
        raise BundleError(
            f"bundle '{directory}' carries plugin code ({', '.join(carried)}); loading it would run that "
            "code. Read it first, then pass --trust-plugins (generate) or trust_plugins=True if you trust "
            "where the bundle came from")
    stored["plugins"] = [str(directory / s) if str(s).startswith("plugins/") else str(s)
                         for s in stored.get("plugins") or []]
    copied = str(stored["codec"].get("path", ""))
    if copied.startswith("codec"):  # a codec copied into the bundle
        for slot in _readers_of(stored, copied):
            stored[slot]["path"] = str(directory / copied)
    if "path" in stored["tokenizer"] and (directory / "tokenizer" / "tokenizer.json").is_file():
        stored["tokenizer"]["path"] = str(directory / "tokenizer")  # the bundle's own copy (qwen2)
    cfg = load_config(stored)
    model = OmniModel(cfg)
    load_model(model, str(directory / "model.safetensors"), strict=True)
    if dtype is not None:  # the weights only: buffers (rotary frequencies, filterbanks) keep fp32
        for p in model.parameters():
            p.data = p.data.to(dtype)
    if device is not None:
        model = model.to(device)
    return model.eval(), cfg
