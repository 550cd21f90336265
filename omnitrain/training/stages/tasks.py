"""What ``omnitrain train`` can train, as specs: each task's LightningModule, its data,
the losses it logs (what ``omnitrain summary --require-drop`` looks at), and the checks of
the settings it needs (``omnitrain.config.task_checks``). ``task=<name>`` picks one."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L

from omnitrain.config.task_checks import TASK_NAMES
from omnitrain.config.typed import RunConfig
from omnitrain.data.datamodule import OmniDataModule
from omnitrain.data.vocoder_data import VocoderDataModule
from omnitrain.training.stages.codec_module import CodecModule
from omnitrain.training.stages.module import OmniModule
from omnitrain.training.stages.stage_module import StageModule
from omnitrain.training.stages.vocoder_module import VocoderModule


@dataclass(frozen=True)
class TaskSpec:
    name: str
    module: type[StageModule]
    data: type[L.LightningDataModule]
    losses: tuple[str, ...]  # logged as train/<loss>
    description: str


TASKS: dict[str, TaskSpec] = {
    "omni": TaskSpec("omni", OmniModule, OmniDataModule, ("text", "codec", "flow"), TASK_NAMES["omni"]),
    "vocoder": TaskSpec("vocoder", VocoderModule, VocoderDataModule, ("gen", "disc", "mel_l1"),
                        TASK_NAMES["vocoder"]),
    "codec": TaskSpec("codec", CodecModule, VocoderDataModule, ("spec_l1",), TASK_NAMES["codec"]),
}


def task_spec(cfg: RunConfig) -> TaskSpec:
    return TASKS[cfg.task]
