"""What ``omnitrain train`` can train, as specs: each task's LightningModule, its data,
the losses it logs (what ``omnitrain summary --require-drop`` looks at), and the checks of
the settings it needs. ``task=<name>`` picks one; nothing else branches on tasks."""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L

from omnitrain.config.typed import RunConfig
from omnitrain.data.datamodule import OmniDataModule
from omnitrain.data.vocoder_data import VocoderDataModule
from omnitrain.registry import registry
from omnitrain.slots import TrainableVocoder
from omnitrain.training.module import OmniModule
from omnitrain.training.stage_module import StageModule
from omnitrain.training.vocoder_module import VocoderModule


@dataclass(frozen=True)
class TaskSpec:
    name: str
    module: type[StageModule]
    data: type[L.LightningDataModule]
    losses: tuple[str, ...]  # logged as train/<loss>
    description: str


TASKS: dict[str, TaskSpec] = {
    "omni": TaskSpec("omni", OmniModule, OmniDataModule, ("text", "codec", "flow"),
                     "the whole model: Thinker text loss, Talker codec loss, DiT flow loss"),
    "vocoder": TaskSpec("vocoder", VocoderModule, VocoderDataModule, ("gen", "disc", "mel_l1"),
                        "the vocoder alone, adversarially, everything else frozen"),
}


def task_spec(cfg: RunConfig) -> TaskSpec:
    return TASKS[cfg.task]


def check_task(cfg: RunConfig) -> list[str]:
    """Config check: a known task, and what the vocoder stage needs."""
    task = cfg.task
    if task not in TASKS:
        return [f"task={task!r}: use one of {list(TASKS)}"]
    problems = []
    if task == "vocoder":
        if cfg.trainer.gradient_clip_val is not None:
            problems.append("task=vocoder optimises manually (two optimizers): set "
                            "trainer.gradient_clip_val=null and use vocoder_train.grad_clip")
        name = cfg.vocoder.name
        if name in registry("vocoder") and not issubclass(registry("vocoder").get(name).cls, TrainableVocoder):
            trainable = [e.name for e in registry("vocoder").entries() if issubclass(e.cls, TrainableVocoder)]
            problems.append(f"task=vocoder trains the vocoder, but vocoder={name} has no weights; "
                            f"choose one of {trainable}")
    return problems
