"""Check a composed config before any expensive work: keys, types, plugin names, and the
constraints that tie slots together. All problems are reported at once.
"""

from __future__ import annotations

import dataclasses

from omegaconf import DictConfig, OmegaConf

from omnitrain.config.schema import SCALAR_KEYS, SECTION_SCHEMAS, schema_node
from omnitrain.config.suggest import suggest
from omnitrain.config.trainer_checks import trainer_problems
from omnitrain.ranges import problems_of
from omnitrain.registry import SLOTS, plugin_config
from omnitrain.slots import MODEL_SLOTS


class ConfigError(ValueError):
    """An invalid config; the message lists every problem and what to change."""


def _unknown_keys(node: DictConfig, schema: type, path: str) -> list[str]:
    fields = {f.name: f for f in dataclasses.fields(schema)}
    problems = []
    for key in node:
        if key not in fields:
            problems.append(f"unknown key '{path}.{key}'{suggest(key, fields, f'{path}.')}")
        else:
            sub = fields[key].type
            sub_cls = sub if isinstance(sub, type) else None
            default = fields[key].default_factory if fields[key].default_factory is not dataclasses.MISSING else None
            if sub_cls is None and default is not None:
                sub_cls = type(default())
            if sub_cls is not None and dataclasses.is_dataclass(sub_cls) and isinstance(node[key], DictConfig):
                problems += _unknown_keys(node[key], sub_cls, f"{path}.{key}")
    return problems


def _unknown_plugin_keys(slot: str, node: DictConfig) -> list[str]:
    """Keys the chosen plugin's config has no field for, each with a 'did you mean'."""
    from omnitrain.registry import registry

    name = node.get("name") if isinstance(node, DictConfig) else None
    if name is None or name not in registry(slot):
        return []  # plugin_config says what is wrong
    fields = [f.name for f in dataclasses.fields(registry(slot).get(name).config_cls)]
    return [f"unknown key '{slot}.{key}' for {slot}={name}{suggest(str(key), fields, f'{slot}.')}"
            for key in node if key != "name" and key not in fields]


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` listing every problem of the config's own: keys, types, slot
    plugins, ranges, how sections tie together. The checks each part of omnitrain brings
    for the settings it owns run on the typed config (``omnitrain.run_config``)."""
    problems: list[str] = []
    known = set(SLOTS) | set(SECTION_SCHEMAS) | set(SCALAR_KEYS) | {"trainer", "strategy"}
    for key in cfg:
        if key not in known:
            problems.append(f"unknown top-level key '{key}'{suggest(key, known)}")
    for slot in SLOTS:
        if slot not in cfg:
            problems.append(f"missing slot '{slot}': choose a plugin, e.g. {slot}=<name> (see `omnitrain list`)")
            continue
        unknown = _unknown_plugin_keys(slot, cfg[slot])
        if unknown:
            problems += unknown
            continue
        try:
            plugin_config(slot, cfg[slot])
        except Exception as exc:
            problems.append(str(exc))
    for section, schema in SECTION_SCHEMAS.items():
        if section not in cfg:
            continue
        unknown = _unknown_keys(cfg[section], schema, section)
        problems += unknown
        if not unknown:
            try:
                OmegaConf.merge(schema_node(schema), cfg[section])
            except Exception as exc:
                problems.append(f"{section}: {exc}".splitlines()[0])
            else:
                problems += problems_of(schema, cfg[section], section)
    if "trainer" in cfg:
        problems += trainer_problems(OmegaConf.to_container(cfg.trainer, resolve=True))
    optim = cfg.get("optim")
    if optim is not None:
        for slot in list(optim.get("freeze") or []) + list(optim.get("slot_lr") or {}):
            if slot not in MODEL_SLOTS:
                problems.append(f"optim: '{slot}' is not a trainable slot; use one of {list(MODEL_SLOTS)}")
    data = cfg.get("data")
    if data is not None and data.get("batching", "samples") == "tokens":
        if not data.get("pack_length"):
            problems.append("data.batching=tokens needs data.pack_length (tokens per row)")
        elif data.get("max_tokens", 0) > data.pack_length:
            problems.append(f"data.max_tokens={data.max_tokens} exceeds data.pack_length={data.pack_length}; "
                            "a sample must fit in one row")
    from omnitrain.config.lora_checks import check_lora
    from omnitrain.config.path_checks import check_run_paths
    from omnitrain.config.speech_checks import check_speech

    problems += check_run_paths(cfg)
    problems += check_lora(cfg)
    problems += check_speech(cfg)
    if not problems:
        from omnitrain.config.decoder_checks import check_decoders
        from omnitrain.config.loss_checks import check_loss_weights

        problems += check_loss_weights(cfg)
        try:
            if cfg.get("task") == "codec":  # only the codec is built and trained: the model's slots need not pair with it
                from omnitrain.registry import build

                build("codec", cfg.codec)
            else:
                problems += check_decoders(cfg)
        except Exception as exc:
            problems.append(f"codec/dit/vocoder/speech: {exc}")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
