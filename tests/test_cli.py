"""The command line: list, config, and clear errors with exit status 2."""

from __future__ import annotations

from omnitrain.cli import main
from omnitrain.registry import SLOTS


def test_list_prints_every_slot_with_its_plugins(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for slot in SLOTS:
        assert f"{slot}:" in out
    assert "tmrope" in out and "rope1d" in out and "griffin_lim" in out
    assert "pocketsphinx" in out and "resemblyzer" in out  # the scorers of eval and eval.metrics
    assert "eval.metrics (at validation):" in out and "wer            needs eval.asr" in out


def test_config_prints_the_composed_recipe(capsys):
    assert main(["config", "recipe=demo", "position=rope1d"]) == 0
    out = capsys.readouterr().out
    assert "name: demo" in out and "name: rope1d" in out


def test_mistyped_key_exits_2_with_a_message(capsys):
    assert main(["config", "trainer.max_step=3"]) == 2
    err = capsys.readouterr().err
    assert "trainer.max_step" in err


def test_unknown_recipe_lists_recipes(capsys):
    assert main(["config", "recipe=nope"]) == 2
    err = capsys.readouterr().err
    assert "demo" in err and "smoke" in err
