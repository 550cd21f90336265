"""Refuse, before training, to resume from a checkpoint this run cannot continue.

Lightning would otherwise build the model, start the strategy and then fail deep in
``load_state_dict`` (or, for ZeRO shards, in DeepSpeed) with a message that names
tensors but not the setting to change. Only metadata is read: tensor names and shapes
from the checkpoint, the model's from a meta-device build of this config.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

from omnitrain.checkpoints import CheckpointError, open_checkpoint
from omnitrain.config.typed import RunConfig
from omnitrain.config.validate import ConfigError
from omnitrain.model.meta import meta_model, unique_tensors
from omnitrain.model.omni_model import OmniModel
from omnitrain.parallel import strategy_for
from omnitrain.registry import SLOTS


def _flat(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}


def config_differences(old: Mapping, new: Mapping, sections=SLOTS) -> list[str]:
    """``thinker.ffn_dim: 64 -> 128`` for every model setting that differs (plain dicts)."""
    a = _flat({s: old[s] for s in sections if s in old})
    b = _flat({s: new[s] for s in sections if s in new})
    return [f"{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_resume_shapes(cfg: RunConfig, path: Path, meta: OmniModel | None = None) -> int | None:
    """Raises ``ConfigError`` unless this run can continue ``path``; returns its step."""
    try:
        reader = open_checkpoint(path)
        reader.verify()
        found = reader.tensors()
        old_cfg = reader.config()
    except CheckpointError as exc:
        raise ConfigError(f"resume={cfg.resume}: {exc}") from exc
    problems = strategy_for(cfg).resume_problems(reader)
    if problems:
        raise ConfigError(f"resume={cfg.resume}: " + "; ".join(problems))
    if cfg.task == "codec":  # the codec stage checkpoints the codec's network alone
        from omnitrain.training.stages.codec_module import codec_network

        model = codec_network(cfg)
    else:
        model = meta or meta_model(cfg)
    expected = {n: tuple(t.shape) for n, t in unique_tensors(model).items()}
    shapes = [f"{n} is {tuple(found[n].shape)} in the checkpoint but {s} in this config"
              for n, s in expected.items() if n in found and tuple(found[n].shape) != s]
    missing = [n for n in expected if n not in found]
    unexpected = [n for n in found if n not in expected]
    if not (shapes or missing or unexpected):
        return reader.step
    changed = config_differences(OmegaConf.to_container(old_cfg, resolve=True), cfg.to_dict())
    raise ConfigError(
        f"resume={cfg.resume}: the checkpoint '{path}' holds a model of a different shape than this "
        f"config builds ({len(shapes)} tensors differ in shape, {len(missing)} missing, "
        f"{len(unexpected)} unexpected; e.g. {(shapes + missing + unexpected)[:3]}).\n"
        f"Model settings that differ from the checkpoint's own config: {changed[:8] or 'none'}.\n"
        "Resume with the settings the checkpoint was trained with, or start a new run."
    )
