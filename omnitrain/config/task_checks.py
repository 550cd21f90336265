"""The tasks ``omnitrain train`` knows, by name, and the checks of the settings each needs.

Here, not beside the tasks' LightningModules (``omnitrain.training.stages.tasks``), so that
loading a config (a bundle's, for generation) never imports Lightning.
"""

from __future__ import annotations

from omnitrain.config.typed import RunConfig
from omnitrain.registry import registry
from omnitrain.slots import TrainableCodec, TrainableVocoder

#: each task's name -> what it trains (``omnitrain.training.stages.tasks.TASKS`` holds one spec per name)
TASK_NAMES: dict[str, str] = {
    "omni": "the whole model: Thinker text loss, Talker codec loss, DiT flow loss",
    "vocoder": "the vocoder alone, adversarially, everything else frozen",
    "codec": "a speech codec (codec=fsq) from the shards' spoken replies, exported as a codec folder",
}


def check_task(cfg: RunConfig) -> list[str]:
    """Config check: a known task, and what the vocoder stage needs."""
    task = cfg.task
    if task not in TASK_NAMES:
        return [f"task={task!r}: use one of {list(TASK_NAMES)}"]
    problems = []
    if task == "codec":
        codec = registry("codec").get(cfg.codec.name).cls if cfg.codec.name in registry("codec") else None
        if codec is None or not issubclass(codec, TrainableCodec):
            trainable = [e.name for e in registry("codec").entries() if issubclass(e.cls, TrainableCodec)]
            problems.append(f"task=codec trains a codec, but codec={cfg.codec.name} is not trainable; "
                            f"choose one of {trainable}")
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
