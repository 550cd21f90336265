"""The registry: built-ins arrive through entry points, names are unique, errors help."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points

import pytest
import torch
from hydra.core.config_store import ConfigStore

from omnitrain.config.validate import ConfigError
from omnitrain.plugin_loading import ENTRY_POINT_GROUP, load_plugins
from omnitrain.registry import SLOTS, RegistryError, build, register, registry
from omnitrain.run_config import compose_config
from omnitrain.slots import Codec


def test_every_slot_has_a_builtin_plugin_from_entry_points():
    load_plugins()
    eps = {ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    for slot in SLOTS:
        entries = registry(slot).entries()
        assert entries, f"slot {slot} has no plugin"
        assert any(e.cls.__module__ in eps for e in entries), f"{slot}: no plugin came from an entry point"


def test_duplicate_name_is_an_error():
    @dataclass
    class Cfg:
        pass

    @register("codec", "dup_test_codec", config=Cfg)
    class First(Codec):
        def __init__(self, cfg):
            pass

    with pytest.raises(RegistryError, match="registered twice"):

        @register("codec", "dup_test_codec", config=Cfg)
        class Second(Codec):
            def __init__(self, cfg):
                pass


def test_a_plugin_must_subclass_its_slots_base():
    @dataclass
    class Cfg:
        pass

    with pytest.raises(TypeError, match="must subclass omnitrain.slots.DiT"):

        @register("dit", "not_a_dit", config=Cfg)
        class NotADiT(torch.nn.Module):
            pass


def test_unknown_name_lists_the_registered_ones():
    load_plugins()
    with pytest.raises(RegistryError) as err:
        registry("position").get("tmrpoe")
    msg = str(err.value)
    assert "rope1d" in msg and "tmrope" in msg and "Did you mean 'tmrope'" in msg


def test_registering_makes_the_plugin_selectable_without_yaml():
    @dataclass
    class HalfThetaConfig:
        theta: float = 500.0

    from omnitrain_plugins.rope1d import Rope1d

    @register("position", "rope_test_half", config=HalfThetaConfig)
    class HalfTheta(Rope1d):
        """A test-only scheme."""

    assert ConfigStore.instance().repo["position"]["rope_test_half.yaml"] is not None
    cfg = compose_config(["position=rope_test_half", "position.theta=250"])
    assert cfg.position.name == "rope_test_half"
    scheme = build("position", cfg.position)
    assert isinstance(scheme, HalfTheta) and scheme.cfg.theta == 250.0


def test_unknown_plugin_in_config_lists_options():
    with pytest.raises(ConfigError) as err:
        compose_config(["position=nope"])
    assert "Available options in 'position'" in str(err.value)
    assert "rope1d" in str(err.value) and "tmrope" in str(err.value)


def test_mistyped_plugin_key_fails():
    with pytest.raises(ConfigError, match="thet"):
        compose_config(["position.thet=5"])


def test_user_plugin_from_a_file_path(tmp_path):
    plugin = tmp_path / "my_vocoder.py"
    plugin.write_text(
        "from dataclasses import dataclass\n"
        "import torch\n"
        "from omnitrain.registry import register\n"
        "from omnitrain.slots import Vocoder\n"
        "@dataclass\n"
        "class SilentConfig:\n"
        "    gain: float = 0.0\n"
        "@register('vocoder', 'silent_file_test', config=SilentConfig)\n"
        "class Silent(Vocoder):\n"
        "    '''Writes silence.'''\n"
        "    def __init__(self, cfg, mel):\n"
        "        super().__init__(); self.cfg = cfg\n"
        "    def forward(self, mel):\n"
        "        return torch.zeros(mel.shape[0], mel.shape[1] * 320)\n"
    )
    cfg = compose_config([f"plugins=[{plugin}]", "vocoder=silent_file_test", "vocoder.gain=2"])
    assert cfg.vocoder.name == "silent_file_test"
    assert registry("vocoder").get("silent_file_test").description == "Writes silence."


def test_user_plugin_from_a_module(tmp_path, monkeypatch):
    pkg = tmp_path / "my_pkg_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "tok.py").write_text(
        "from dataclasses import dataclass\n"
        "from omnitrain.registry import register\n"
        "from omnitrain_plugins.byte_tokenizer import ByteTokenizer\n"
        "@dataclass\n"
        "class C:\n"
        "    pass\n"
        "@register('tokenizer', 'module_test_tok', config=C)\n"
        "class Tok(ByteTokenizer):\n"
        "    '''A module plugin.'''\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = compose_config(["plugins=[my_pkg_test.tok]", "tokenizer=module_test_tok"])
    assert build("tokenizer", cfg.tokenizer).vocab_size == 256 + 11


def test_missing_plugin_module_is_a_clear_error():
    with pytest.raises(Exception, match="cannot be imported"):
        compose_config(["plugins=[no_such_module_xyz]"])
