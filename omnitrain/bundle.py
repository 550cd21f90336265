"""Inference bundles: export a training checkpoint, load it back for generation.

A bundle is a folder::

    model.safetensors   fp32 weights of the whole Thinker-Talker model
    config.yaml         the resolved training config (names the plugin of every slot)
    tokenizer/          files written by the tokenizer plugin
    plugins/            copies of plugins that were given as .py files
    manifest.json       format, versions, plugin origins, sha256 of every file
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_model, save_model

import omnitrain
from omnitrain.model.omni_model import OmniModel
from omnitrain.plugin_loading import load_plugins
from omnitrain.registry import SLOTS, registry
from omnitrain.slots import PretrainedCodec

FORMAT = "omnitrain-bundle"
FORMAT_VERSION = 1


class BundleError(ValueError):
    pass


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checkpoint(path: Path) -> tuple[DictConfig, dict[str, torch.Tensor]]:
    """A Lightning checkpoint file -> (config, model state dict without the ``model.`` prefix)."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"checkpoint '{path}' does not exist")
    if path.is_dir():
        raise BundleError(
            f"'{path}' is a directory (a sharded checkpoint); export it with a strategy-aware "
            "exporter, or pass the consolidated .ckpt file"
        )
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    try:
        cfg = OmegaConf.create(ckpt["hyper_parameters"]["config"])
    except KeyError as exc:
        raise BundleError(f"'{path}' is not an omnitrain checkpoint (no config in hyper_parameters)") from exc
    state = {k[len("model."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    return cfg, state


def _bundle_plugins(cfg: DictConfig, out: Path) -> list[str]:
    """Copy .py plugins into the bundle and point the config at the copies."""
    specs = []
    for spec in list(cfg.get("plugins") or []):
        spec = str(spec)
        if spec.endswith(".py"):
            (out / "plugins").mkdir(exist_ok=True)
            shutil.copy2(spec, out / "plugins" / Path(spec).name)
            specs.append(f"plugins/{Path(spec).name}")
        else:
            specs.append(spec)
    return specs


def _bundle_codec(cfg: DictConfig, out: Path) -> str | None:
    """Copy a pretrained codec's local files into the bundle (``codec/``)."""
    if not issubclass(registry("codec").get(cfg.codec.name).cls, PretrainedCodec):
        return None
    src = Path(cfg.codec.path)
    if src.is_dir():
        shutil.copytree(src, out / "codec", dirs_exist_ok=True)
        return "codec"
    (out / "codec").mkdir(exist_ok=True)
    shutil.copy2(src, out / "codec" / src.name)
    return f"codec/{src.name}"


def export_bundle(checkpoint: Path, out: Path) -> Path:
    cfg, state = read_checkpoint(checkpoint)
    load_plugins(list(cfg.get("plugins") or []))
    model = OmniModel(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BundleError(
            f"checkpoint '{checkpoint}' does not match its config's model: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model.float().eval()
    save_model(model, str(out / "model.safetensors"))
    bundled = _bundle_plugins(cfg, out)
    cfg = OmegaConf.merge(cfg, {"plugins": bundled})
    codec_path = _bundle_codec(cfg, out)
    if codec_path is not None:
        cfg = OmegaConf.merge(cfg, {"codec": {"path": codec_path}})
    OmegaConf.save(cfg, out / "config.yaml", resolve=True)
    (out / "tokenizer").mkdir(exist_ok=True)
    model.tokenizer.save(out / "tokenizer")
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source_checkpoint": str(Path(checkpoint).resolve()),
        "versions": {"omnitrain": omnitrain.__version__, "torch": torch.__version__},
        "plugins": {
            slot: {"name": cfg[slot].name, "origin": registry(slot).get(cfg[slot].name).origin}
            for slot in SLOTS
        },
        "parameters": sum(p.numel() for p in model.parameters()),
        "files": {str(p.relative_to(out)): _sha256(p) for p in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def load_bundle(directory: Path, verify: bool = True) -> tuple[OmniModel, DictConfig]:
    directory = Path(directory)
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        raise BundleError(f"'{directory}' is not an omnitrain bundle (no manifest.json); create one with `omnitrain export`")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT or manifest.get("format_version", 0) > FORMAT_VERSION:
        raise BundleError(f"'{directory}': unsupported bundle format {manifest.get('format')} v{manifest.get('format_version')}")
    if verify:
        for name, digest in manifest["files"].items():
            path = directory / name
            if not path.exists() or _sha256(path) != digest:
                raise BundleError(f"bundle file '{path}' is missing or its checksum does not match the manifest")
    cfg = OmegaConf.load(directory / "config.yaml")
    specs = [str(directory / s) if str(s).startswith("plugins/") else str(s) for s in cfg.get("plugins") or []]
    load_plugins(specs)
    if str(cfg.codec.get("path", "")).startswith("codec"):  # a codec copied into the bundle
        cfg.codec.path = str(directory / cfg.codec.path)
    model = OmniModel(cfg)
    load_model(model, str(directory / "model.safetensors"), strict=True)
    return model.eval(), cfg
