"""One Registry class serves every lookup by name (issue 21): slots' plugins, strategies,
checkpoint readers and Hugging Face formats share its rules: a taken name refused with
both origins, an unknown name answered with the closest and the list, registration order kept."""

from __future__ import annotations

import pytest

from omnitrain.checkpoints import READERS
from omnitrain.checkpoints.lightning_file import LightningFileReader
from omnitrain.hf.formats import FORMATS, find_format
from omnitrain.name_registry import Registry, RegistryError
from omnitrain.parallel import STRATEGIES
from omnitrain.plugin_loading import load_plugins
from omnitrain.registry import REGISTRIES


class First:
    pass


class Second:
    pass


def test_every_named_lookup_is_one_registry_class():
    load_plugins()
    for reg in [*REGISTRIES.values(), STRATEGIES, READERS, FORMATS]:
        assert isinstance(reg, Registry), reg
    assert {"ddp", "deepspeed", "fsdp"} <= set(STRATEGIES)
    assert READERS.values()[0] is LightningFileReader and {"deepspeed", "fsdp"} <= set(READERS)
    assert find_format("qwen2_5_omni") is FORMATS.get("qwen2_5_omni")


def test_a_taken_name_is_refused_naming_both_origins_and_the_same_origin_replaces():
    reg: Registry[type] = Registry("widget")
    reg.add("a", First)
    assert reg.add("a", First) is First  # a module imported twice registers again
    with pytest.raises(RegistryError) as err:
        reg.add("a", Second)
    assert str(err.value) == (f"widget 'a' is registered twice: by {__name__}.First and by {__name__}.Second. "
                              "Rename one of them.")
    assert reg.get("a") is First


def test_an_unknown_name_gets_the_closest_the_list_and_the_advice():
    reg: Registry[int] = Registry("widget", "(widget=<name>)")
    reg.add("alpha", 1, "x")
    reg.add("beta", 2, "x")
    with pytest.raises(RegistryError, match=r"^unknown widget 'alpah' \(did you mean 'alpha'\?\); "
                                            r"registered: \['alpha', 'beta'\] \(widget=<name>\)$"):
        reg.get("alpah")
    with pytest.raises(KeyError, match=r"^unknown widget 'zzz'; registered"):  # still a KeyError
        reg["zzz"]


def test_registration_order_is_kept_for_lookups_that_try_in_turn():
    reg: Registry[str] = Registry("reader")
    for name in ("zeta", "alpha", "mid"):
        reg.add(name, name.upper(), "x")
    assert reg.values() == ["ZETA", "ALPHA", "MID"] and list(reg) == ["zeta", "alpha", "mid"]
    assert reg.names() == ["alpha", "mid", "zeta"] and len(reg) == 3 and "mid" in reg
