"""The command line follows the conventions users bring from Hydra: help that lists
recipes, groups and examples; "did you mean" for either form of a mistyped key;
``-m`` sweeps; ``recipe=path/to/file.yaml``; ``hydra.*`` refused with what to use."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from omnitrain.cli import build_parser, main
from omnitrain.cli_help import EXAMPLES, _takes_overrides, _verbs
from omnitrain.config.catalog import recipe_description
from omnitrain.config.compose import config_dir, recipe_files
from omnitrain.sweep import expand
from tests.helpers import smoke_overrides

ROOT = Path(__file__).resolve().parents[1]
VERBS = dict(_verbs(build_parser()))


def _help(verb: str, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main([*verb.split(), "--help"])
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_override_verbs_help_lists_every_recipe_and_group(capsys):
    verbs = [v for v, p in VERBS.items() if _takes_overrides(p)]
    assert {"train", "config", "plan", "data demo", "data pack"} <= set(verbs)
    recipes = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
    groups = sorted(p.name for p in (ROOT / "configs").iterdir() if p.is_dir() and not p.name.startswith("_"))
    for verb in verbs:
        text = _help(verb, capsys)
        listed = dict(re.findall(r"^  (\w+)\s{2,}(.+)$", text.split("recipes (", 1)[1].split("config groups")[0], re.M))
        assert sorted(listed) == sorted(recipe_files()) and set(recipes) <= set(listed), verb
        assert listed["smoke"].startswith(recipe_description(ROOT / "recipes/smoke.yaml")[:40])
        for group in groups:  # every folder of configs/, with each of its files as an option
            line = re.search(rf"^  {group}:\s+(.+(?:\n {{18}}.+)*)", text, re.M)
            assert line, f"{verb} --help lacks group {group}"
            options = {o.strip() for o in line.group(1).split(",")}
            assert {p.stem for p in (config_dir() / group).glob("*.yaml")} <= options, (verb, group)
        # groups registered in code (plugins, strategies) are listed too
        assert re.search(r"^  strategy:\s+auto, ddp, deepspeed, deepspeed_zero1,", text, re.M)
        assert re.search(r"^  position:\s+.*rope1d.*tmrope", text, re.M)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_shows_two_examples_that_parse(verb, capsys):
    if verb == "data":  # the group itself; its verbs carry the examples
        return
    text = _help(verb, capsys)
    examples = text.split("examples:\n", 1)[1].splitlines()
    assert len([e for e in examples if e.startswith("  omnitrain ")]) >= 2, verb
    assert list(EXAMPLES[verb]) == [e.strip() for e in examples[:len(EXAMPLES[verb])]]
    for example in EXAMPLES[verb]:  # each example is a command line the parser accepts
        args = build_parser().parse_args(shlex.split(example.split("   #")[0])[1:])
        assert [args.command, getattr(args, "data_command", None)][:len(verb.split())] == verb.split()


@pytest.mark.parametrize("override,key,suggestion", [
    ("trainer.max_step=3", "trainer.max_step", "trainer.max_steps"),
    ("+trainer.max_step=3", "trainer.max_step", "trainer.max_steps"),
    ("nmae=x", "nmae", "name"),
    ("+nmae=x", "nmae", "name"),
    ("thinker.layer=2", "thinker.layer", "thinker.layers"),
    ("+thinker.layer=2", "thinker.layer", "thinker.layers"),
    ("strategy.stag=2", "strategy.stag", "strategy.stage"),
    ("positon=rope1d", "positon", "position"),
    ("position=rope1dd", "rope1dd", "rope1d"),
    ("recipe=smok", "smok", "smoke"),
    ("trainer.accumulate_grad_batchs=2", "trainer.accumulate_grad_batchs", "trainer.accumulate_grad_batches"),
])
def test_mistyped_key_in_either_form_suggests_and_exits_2_before_any_work(override, key, suggestion, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "recipe=smoke", f"run_dir={run_dir}", override]) == 2
    err = capsys.readouterr().err
    assert f"'{key}'" in err and f"did you mean '{suggestion}'" in err, err
    assert not run_dir.exists()  # nothing was written: the config failed first


@pytest.mark.parametrize("override,instead", [
    ("hydra.run.dir=/tmp/elsewhere", "Use run_dir=/tmp/elsewhere instead"),
    ("hydra.job.chdir=true", "never changes the working folder"),
    ("hydra/launcher=joblib", "omnitrain train -m"),
    ("+hydra.verbose=true", "logger="),
])
def test_hydra_overrides_are_refused_with_what_to_use(override, instead, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "recipe=smoke", f"run_dir={run_dir}", override]) == 2
    err = capsys.readouterr().err
    assert f"'{override}' is refused" in err and instead in err, err
    assert not run_dir.exists()


def test_recipe_file_by_relative_path_trains(demo_dir, tmp_path, monkeypatch):
    text = (ROOT / "recipes/smoke.yaml").read_text()  # its defaults list (size: tiny) comes along
    assert "\nname: smoke\n" in text
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/my_recipe.yaml").write_text(
        text.replace("\nname: smoke\n", "\nname: my_file_recipe\n") + "thinker:\n  layers: 1\n")
    monkeypatch.chdir(tmp_path)
    overrides = smoke_overrides(demo_dir, tmp_path / "run", "trainer.max_steps=1")
    assert overrides[0] == "recipe=smoke"
    assert main(["train", "recipe=mine/my_recipe.yaml", *overrides[1:]]) == 0
    saved = OmegaConf.load(tmp_path / "run/config.yaml")
    assert saved.name == "my_file_recipe" and saved.thinker.layers == 1
    assert (tmp_path / "run/checkpoints/last.ckpt").exists()


def test_missing_recipe_file_says_where_it_looked(tmp_path, capsys):
    assert main(["config", f"recipe={tmp_path}/smoke.yaml"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/smoke.yaml" in err and "recipe=smoke" in err


def test_multirun_runs_each_combination_in_its_own_run_dir_and_prints_a_table(demo_dir, tmp_path, capsys):
    base = tmp_path / "sweep"
    argv = ["train", "-m", "position=tmrope,rope1d", *smoke_overrides(demo_dir, base, "trainer.max_steps=2")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for i, position in enumerate(["tmrope", "rope1d"]):
        run_dir = base / f"{i}-position={position}"
        assert OmegaConf.load(run_dir / "config.yaml").position.name == position
        assert (run_dir / "checkpoints/last.ckpt").exists() and (run_dir / "csv/metrics.csv").exists()
        row = re.search(rf"^{i}\s+position={position}\s+0\s+(\S+)\s+(\S+)\s+{re.escape(str(run_dir))}$", out, re.M)
        assert row, out
        assert 0 < float(row.group(1)) < 100 and 0 < float(row.group(2)) < 100
    assert "2/2 succeeded" in out


def test_dash_m_may_stand_anywhere_and_sweeps_expand_in_hydra_order():
    for argv in (["train", "-m", "a=1,2", "b=x"], ["train", "a=1,2", "b=x", "-m"], ["train", "a=1,2", "-m", "b=x"]):
        args = build_parser().parse_args(argv)
        assert [*args.overrides, *args.multirun] == ["a=1,2", "b=x"], argv
    assert build_parser().parse_args(["train", "a=1"]).multirun is None
    runs = expand(["a=1,2", "b=x", "+c=range(0,2)", "d='p q','r'"])
    assert [swept for _, swept in runs][:3] == [["a=1", "+c=0", "d='p q'"], ["a=1", "+c=0", "d='r'"],
                                                ["a=1", "+c=1", "d='p q'"]]
    assert len(runs) == 8 and all("b=x" in combo for combo, _ in runs)


def test_multirun_validates_every_combination_before_the_first_run(demo_dir, tmp_path, capsys):
    base = tmp_path / "sweep"
    argv = ["train", "-m", "position=tmrope,rope1dd", *smoke_overrides(demo_dir, base)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sweep run 1 (position=rope1dd)" in err and "did you mean 'rope1d'" in err
    assert not base.exists()


def test_multirun_reports_a_failed_run_and_exits_nonzero(demo_dir, tmp_path, capsys):
    base = tmp_path / "sweep"
    overrides = smoke_overrides(demo_dir, base)
    overrides[1] = f"data.train_shards={tmp_path}/missing-*.tar"
    assert main(["train", "-m", *overrides]) == 1
    out = capsys.readouterr().out
    assert re.search(rf"^0\s+-\s+2\s+-\s+-\s+{re.escape(str(base / '0'))}$", out, re.M), out
    assert "0/1 succeeded" in out
