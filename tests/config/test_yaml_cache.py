"""Recipe and size files are parsed once per process (a compose reads all of them), yet an
edited file is always seen, and no caller can change what the next one reads."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf

from omnitrain.config.sizes import size_tables
from omnitrain.config.yaml_cache import load_yaml
from omnitrain.run_config import compose_config


def test_an_edited_file_is_read_again_even_at_the_same_size_and_time(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("a: 1\n")
    stamp = path.stat().st_mtime_ns
    assert load_yaml(path).a == 1
    path.write_text("a: 2\n")  # same length; and the same modification time, as a fast edit may have
    os.utime(path, ns=(stamp, stamp))
    assert load_yaml(path).a == 2


def test_a_caller_changing_its_copy_changes_nothing_for_the_next(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("a: {b: 1}\n")
    first = load_yaml(path)
    first.a.b = 5
    first.pop("a")
    assert load_yaml(path) == OmegaConf.create({"a": {"b": 1}})


def test_size_tables_follow_an_edited_size_file(tmp_path):
    size = tmp_path / "size"
    size.mkdir()
    (size / "small.yaml").write_text("thinker:\n  transformer:\n    layers: 2\n")
    (size / "smaller.yaml").write_text("defaults: [small]\nthinker:\n  transformer:\n    hidden_size: 8\n")
    tables = size_tables(tmp_path)
    assert tables["smaller"].thinker.transformer == {"layers": 2, "hidden_size": 8}
    tables["small"].thinker.transformer.layers = 99  # the caller's copy
    (size / "small.yaml").write_text("thinker:\n  transformer:\n    layers: 3\n")
    assert size_tables(tmp_path)["smaller"].thinker.transformer == {"layers": 3, "hidden_size": 8}


def test_a_recipe_edited_between_composes_is_composed_as_edited(tmp_path, monkeypatch):
    folder = tmp_path / "recipes"
    folder.mkdir()
    monkeypatch.setenv("OMNITRAIN_RECIPE_PATH", str(folder))
    recipe = folder / "mine_cached.yaml"
    recipe.write_text("# @package _global_\ndefaults:\n  - override /size: tiny\ntrainer:\n  max_steps: 11\n")
    assert compose_config(["recipe=mine_cached"]).trainer.max_steps == 11
    recipe.write_text("# @package _global_\ndefaults:\n  - override /size: tiny\ntrainer:\n  max_steps: 12\n")
    assert compose_config(["recipe=mine_cached"]).trainer.max_steps == 12


def test_the_shipped_recipes_read_as_omegaconf_reads_them():
    from omnitrain.config.compose import recipe_files

    for path in recipe_files().values():
        assert load_yaml(Path(path)) == OmegaConf.load(path), path
