"""Every config file under configs/ and every recipe composes and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnitrain.config.compose import recipe_files
from omnitrain.config.validate import ConfigError
from omnitrain.plugin_loading import load_plugins
from omnitrain.registry import SLOTS, registry
from omnitrain.run_config import compose_config

ROOT = Path(__file__).resolve().parents[2]
GROUP_FILES = sorted(p for p in (ROOT / "configs").glob("*/*.yaml"))


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: f"{p.parent.name}={p.stem}")
def test_every_group_option_composes(path):
    cfg = compose_config([f"{path.parent.name}={path.stem}"])
    assert path.parent.name in cfg


@pytest.mark.parametrize("name", sorted(recipe_files()))
def test_every_recipe_composes(name):
    cfg = compose_config([f"recipe={name}"])
    assert cfg.name


def test_recipes_folder_is_what_the_recipe_group_serves():
    assert {p.stem for p in (ROOT / "recipes").glob("*.yaml")} <= set(recipe_files())


def _plugin_names():
    load_plugins()
    return [(slot, e.name) for slot in SLOTS for e in registry(slot).entries() if "test" not in e.name]


@pytest.mark.parametrize("slot,name", _plugin_names(), ids=lambda x: str(x))
def test_every_registered_plugin_is_one_override_away(slot, name):
    from omnitrain.slots import PretrainedCodec

    if issubclass(registry(slot).get(name).cls, PretrainedCodec):  # needs its local files too
        with pytest.raises(ConfigError, match="codec.path"):
            compose_config([f"{slot}={name}"])
        return
    cfg = compose_config([f"{slot}={name}"])
    assert cfg[slot].name == name


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
