"""Tasks are specs: each names its LightningModule (a StageModule), its data, its losses."""

from __future__ import annotations

import pytest

from omnitrain.config.validate import ConfigError
from omnitrain.run_config import compose_config
from omnitrain.training.stages.stage_module import StageModule
from omnitrain.training.stages.tasks import TASKS, task_spec


@pytest.mark.parametrize("name", sorted(TASKS))
def test_each_task_is_a_stage_with_data_and_losses(name):
    spec = TASKS[name]
    assert issubclass(spec.module, StageModule) and spec.losses and hasattr(spec.data, "check")


def test_the_config_picks_the_task_and_an_unknown_one_lists_them():
    assert task_spec(compose_config(["recipe=speech_vocoder"])).name == "vocoder"
    with pytest.raises(ConfigError, match=r"task='distill': use one of \['omni', 'vocoder', 'codec'\]"):
        compose_config(["task=distill"])
