"""Every numeric and enum setting has a range, checked at compose time: the value a user
mistypes is an error that names the key and what it accepts, never a traceback, and
nothing starts (issue 15's probes)."""

from __future__ import annotations

import dataclasses

import pytest

from omnitrain.cli import main
from omnitrain.config.schema import SECTION_SCHEMAS
from omnitrain.config.validate import ConfigError
from omnitrain.run_config import compose_config

FREE_FORM = {"weights", "train_shards", "val_shards", "project", "entity", "tags", "speaker", "speakers", "freeze", "slot_lr",
             "betas", "norm_mean", "save_last", "enabled", "talker_detach_thinker"}
FREE_FORM |= {"slots", "targets", "trainable"}  # lora: slot names, Linear and parameter globs
FREE_FORM |= {"system"}  # generate.system: a free text (the system prompt)
FREE_FORM |= {"index"}  # data.index: a path or URL
FREE_FORM |= {"metrics", "asr", "reference"}  # eval: metric names and scorers (checked by name), a wav path


@pytest.mark.parametrize(
    "override,needle",
    [
        ("data.batch_size=0", "data.batch_size=0: must be a number >= 1"),
        ("data.batch_size=-4", "data.batch_size=-4: must be a number >= 1"),
        ("data.epoch_batches=0", "data.epoch_batches=0: must be a number >= 1"),
        ("data.num_workers=-1", "data.num_workers=-1: must be a number >= 0"),
        ("trainer.max_steps=abc", "trainer.max_steps='abc': must be an integer >= 1"),
        ("trainer.max_steps=0", "trainer.max_steps=0: must be an integer >= 1"),
        ("checkpoint.every_n_steps=-5", "checkpoint.every_n_steps=-5: must be a number >= 1"),
        ("trainer.precision=banana", "trainer.precision='banana': must be one of"),
        ("trainer.devices=two", "trainer.devices='two': must be 'auto', an integer >= 1"),
        ("trainer.devices=0", "trainer.devices=0: must be 'auto', an integer >= 1"),
        ("optim.lr=-1", "optim.lr=-1.0: must be a number > 0"),
        ("optim.schedule=linear", "optim.schedule='linear': must be one of ['cosine', 'constant']"),
        ("generate.top_p=1.5", "generate.top_p=1.5: must be a number > 0 and <= 1"),
        ("logger.wandb.mode=cloud", "logger.wandb.mode='cloud': must be one of"),
        ("speech.hop_length=0", "speech.hop_length=0: must be a number >= 1"),
        ("trainer.max_step=3", "unknown key 'trainer.max_step' (did you mean 'trainer.max_steps'?)"),
        ("data.batchsize=3", "unknown key 'data.batchsize' (did you mean 'data.batch_size'?)"),
    ],
)
def test_out_of_range_values_fail_at_compose_time(override, needle):
    with pytest.raises(ConfigError) as err:
        compose_config([override])
    assert needle in str(err.value)


def test_the_cli_says_error_and_starts_nothing(tmp_path, capsys):
    assert main(["train", "data.batch_size=0", f"run_dir={tmp_path / 'run'}"]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_keep_two_checkpoints_is_valid():
    assert compose_config(["checkpoint.keep=2"]).checkpoint.keep == 2


@pytest.mark.parametrize("section", sorted(SECTION_SCHEMAS))
def test_every_numeric_and_enum_field_declares_its_range(section):
    def walk(schema: type, prefix: str) -> list[str]:
        missing = []
        for f in dataclasses.fields(schema):
            factory = f.default_factory if f.default_factory is not dataclasses.MISSING else None
            if factory is not None and dataclasses.is_dataclass(factory):
                missing += walk(factory, f"{prefix}.{f.name}")
            elif f.name not in FREE_FORM and not ({"range", "choices"} & set(f.metadata)):
                missing.append(f"{prefix}.{f.name}")
        return missing

    assert walk(SECTION_SCHEMAS[section], section) == []


def test_the_ode_methods_the_schema_allows_are_the_samplers_tableaus():
    from omnitrain.config.schema import GenerateConfig
    from omnitrain.model.flow_matching import TABLEAUS

    (field,) = [f for f in dataclasses.fields(GenerateConfig) if f.name == "ode_method"]
    assert set(field.metadata["choices"]) == set(TABLEAUS)
