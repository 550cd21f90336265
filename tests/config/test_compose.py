"""Every config file under configs/ and every recipe composes, validates and takes effect:
the composed config holds what the file says, read here from the YAML on its own."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path

import pytest
import yaml

from omnitrain.config.compose import recipe_files
from omnitrain.config.validate import ConfigError
from omnitrain.plugin_loading import load_plugins
from omnitrain.registry import SLOTS, registry
from omnitrain.run_config import compose_config
from tests.helpers import untrained_codec_folder

ROOT = Path(__file__).resolve().parents[2]
GROUP_FILES = sorted(p for p in (ROOT / "configs").glob("*/*.yaml"))
RECIPES = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
TRAIN_DEFAULTS = {k: v for entry in yaml.safe_load((ROOT / "configs/train.yaml").read_text())["defaults"]
                  if isinstance(entry, dict) for k, v in entry.items()}


def _file(group, option):
    path = ROOT / ("recipes" if group == "recipe" else f"configs/{group}") / f"{option}.yaml"
    return path if path.exists() else None


def _flat(node, prefix):
    if not isinstance(node, dict):
        return {prefix.rstrip("."): node}
    return {k: v for key, value in node.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def _merge(into, node):
    for key, value in node.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _walk(group, option, leaves, sizes):
    """Hydra's rules in brief: a file's defaults first (an entry of its own group is its
    parent; ``override /g: o`` chooses o), then its own values, under its group's key
    unless ``# @package _global_`` (recipes always are). A group option with no file is a
    plugin or strategy registered in code: its node's ``name``."""
    path = _file(group, option)
    if path is None:
        leaves[f"{group}.name"] = option
        return
    text = path.read_text()
    data = yaml.safe_load(text) or {}
    for entry in data.pop("defaults", []):
        if entry == "_self_":
            continue
        if isinstance(entry, str):  # "/recipe/demo", or a parent in the same group
            sub, _, opt = entry.lstrip("/").rpartition("/")
            _walk(sub or group, opt, leaves, sizes)
        else:
            ((key, opt),) = entry.items()
            _walk(key.removeprefix("override").strip().lstrip("/"), opt, leaves, sizes)
    if group == "size":  # a table of rows per slot and plugin, applied below
        sizes["name"] = option
        _merge(sizes, data)
        return
    if group == "model":
        leaves["model"] = option
    top = group == "recipe" or "# @package _global_" in text
    leaves.update(_flat(data, "" if top else f"{group}."))


def expected(group, option):
    """Dotted key -> the value choosing ``group=option`` must leave in the composed config."""
    leaves, sizes = {}, {}
    _walk(group, option, leaves, sizes)
    if not sizes:
        return leaves
    out = {"size": sizes["name"]}
    for slot, rows in sizes.items():
        if slot != "name":
            plugin = leaves.get(f"{slot}.name", TRAIN_DEFAULTS[slot])
            out.update(_flat(rows.get(plugin, {}), f"{slot}."))
    return {**out, **leaves}  # no file here sets a key a size row sets: the order is moot


def _get(cfg, dotted):
    """The value at ``dotted``; "<absent>" where the key is not there."""
    try:
        for key in dotted.split("."):
            cfg = cfg[key] if isinstance(cfg, Mapping) else getattr(cfg, key)
    except (KeyError, AttributeError):
        return "<absent>"
    return list(cfg) if isinstance(cfg, tuple) else cfg


def _differences(cfg, want):
    return {k: (_get(cfg, k), v) for k, v in want.items() if _get(cfg, k) != v}


@cache
def _default():
    return compose_config([])


OPTIONS = [(p.parent.name, p.stem) for p in GROUP_FILES] + [("recipe", name) for name in RECIPES]


# recipes that speak through a codec a task=codec run trained (codec.path: its exported folder)
TRAINED_CODEC = {"demo_speech"}


@pytest.mark.parametrize("group,option", OPTIONS, ids=lambda x: str(x))
def test_every_option_takes_effect(group, option, tmp_path):
    """Each option's own values (and the choices and size rows it brings) are in the
    composed config: an override Hydra ignored leaves the default's instead."""
    if group == "recipe" and option in TRAINED_CODEC:  # its codec folder is made by make demo-speech
        with pytest.raises(ConfigError, match="codec.json"):
            compose_config([f"{group}={option}", f"codec.path={tmp_path / 'none'}"])
        folder = untrained_codec_folder(tmp_path / "codec")
        cfg = compose_config([f"{group}={option}", f"codec.path={folder}"])
        differ = _differences(cfg, expected(group, option))
        assert {k for k in differ if not k.endswith(".path")} == set(), differ
        return
    cfg = compose_config([f"{group}={option}"])
    assert _differences(cfg, expected(group, option)) == {}


def test_every_option_but_the_default_differs_from_the_default():
    """So each item above fails when its option is ignored (the default option cannot)."""
    same = [f"{g}={o}" for g, o in OPTIONS
            if TRAIN_DEFAULTS.get(g) != o and not _differences(_default(), expected(g, o))]
    assert same == []


def test_recipes_folder_is_what_the_recipe_group_serves():
    assert {p.stem for p in (ROOT / "recipes").glob("*.yaml")} <= set(recipe_files())


def _plugin_names():
    load_plugins()
    return [(slot, e.name) for slot in SLOTS for e in registry(slot).entries() if "test" not in e.name]


@pytest.mark.parametrize("slot,name", _plugin_names(), ids=lambda x: str(x))
def test_every_registered_plugin_is_one_override_away(slot, name):
    from omnitrain.slots import PretrainedCodec

    if issubclass(registry(slot).get(name).cls, PretrainedCodec) or (slot, name) in READS_CODEC_FILES:
        # needs its local files too
        with pytest.raises(ConfigError, match="codec.path"):
            compose_config([f"{slot}={name}"])
        return
    if (slot, name) in PAIRED:  # alone, the config check names what to pair it with
        needle, partners = PAIRED[slot, name]
        with pytest.raises(ConfigError, match=needle):
            compose_config([f"{slot}={name}"])
        assert compose_config([partners, f"{slot}={name}"])[slot].name == name
        return
    cfg = compose_config([f"{slot}={name}"])
    assert cfg[slot].name == name


# plugins that read a pretrained codec's local files (``codec.path``) besides the codec itself
READS_CODEC_FILES = {("vocoder", "hf_audio"), ("vocoder", "fsq")}
# plugins that compose only with a partner: (the error alone, an override that pairs them)
PAIRED = {
    ("dit", "none"): ("dit=none makes no mel, so the vocoder must decode codes", "recipe=qwen3_omni_smoke"),
    ("vocoder", "code2wav"): ("decodes codes straight to a waveform: set dit=none", "recipe=qwen3_omni_smoke"),
    ("codec", "pitch_groups"): ("code groups per frame but talker=prefix takes one", "recipe=qwen3_omni_smoke"),
    ("codec", "qwen3_omni_codes"): ("code groups per frame but talker=prefix takes one", "model=qwen3_omni30b"),
}


@pytest.mark.parametrize(
    "override,needle",
    [
        ("trainer.max_step=3", "max_step"),
        ("+trainer.max_step=3", "did you mean 'trainer.max_steps'"),
        ("+data.batchsize=3", "did you mean 'data.batch_size'"),
        ("+optim.lrr=0.1", "optim.lrr"),
        ("optim.freeze=[encoder]", "not a trainable slot"),
        ("+trainer.logger=false", "set by omnitrain"),
        ("strategy.name=zero9", "unknown strategy"),
        ("+typo_top=1", "unknown top-level key"),
        ("speech.hop_length=160", "mel frames/s"),
        ("loss.codec=-1", "loss.codec=-1.0: must be a number >= 0"),
        ("thinker.layers=two", "thinker"),
    ],
)
def test_config_mistakes_fail_before_any_work(override, needle):
    with pytest.raises(ConfigError) as err:
        compose_config([override])
    assert needle in str(err.value)


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as err:
        compose_config(["+data.batchsize=3", "+optim.lrr=0.1"])
    assert "data.batchsize" in str(err.value) and "optim.lrr" in str(err.value)


def test_a_map_field_takes_new_keys_as_the_readme_writes_them():
    """``optim.slot_lr={talker: 5e-4}`` (README) and ``loss.weights.<name>=...``: a map's keys
    are the user's, so Hydra's struct mode must not refuse them."""
    from omnitrain.config.compose import compose_run

    assert dict(compose_run(["optim.slot_lr={talker: 5e-4}"]).optim.slot_lr) == {"talker": 5e-4}
    assert dict(compose_run(["optim.slot_lr.thinker=2e-5"]).optim.slot_lr) == {"thinker": 2e-5}
    with pytest.raises(ConfigError, match="loss.weights.anything: no plugin"):  # past Hydra, to our check
        compose_run(["loss.weights.anything=0.5"])
