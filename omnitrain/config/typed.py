"""The run config as one frozen dataclass tree, made once from the composed Hydra config
(``omnitrain.run_config.compose_config``); every consumer reads typed sections.

Sections are the schema dataclasses (frozen instances); each slot is a ``PluginChoice``
(its plugin's name and validated config, whose fields read through it:
``cfg.thinker.hidden_size``); the strategy a ``StrategyChoice`` (name and typed options);
the trainer a ``TrainerArgs``. ``to_dict`` gives the plain form checkpoints and bundles
store. Nothing here is mutated: ``dataclasses.replace`` makes a changed copy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from omnitrain.config.schema import (
    CheckpointConfig,
    DataConfig,
    EvalConfig,
    GenerateConfig,
    LoggerConfig,
    LoraConfig,
    LossConfig,
    OptimConfig,
    PerfConfig,
    PlanConfig,
    VocoderTrainConfig,
)
from omnitrain.features.speech_mel import SpeechConfig
from omnitrain.registry import PluginChoice


@dataclass(frozen=True)
class StrategyChoice:
    """The distribution strategy's name and its typed options (``omnitrain.parallel``)."""

    name: str
    options: Any

    def __getattr__(self, key: str) -> Any:  # cfg.strategy.stage reads the option
        if key.startswith("_") or key in ("name", "options"):
            raise AttributeError(key)
        return getattr(self.options, key)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self.options)}


@dataclass(frozen=True)
class TrainerArgs:
    """Lightning ``Trainer`` arguments: those omnitrain reads, typed; any other in ``extra``."""

    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    max_steps: int = -1
    log_every_n_steps: int = 50
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = 1
    limit_val_batches: Any = None
    gradient_clip_val: float | None = None
    gradient_clip_algorithm: str | None = None
    accumulate_grad_batches: int = 1
    num_sanity_val_steps: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, args: Mapping[str, Any]) -> TrainerArgs:
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in args.items() if k in known},
                   extra={k: v for k, v in args.items() if k not in known})

    def lightning(self) -> dict[str, Any]:
        """The arguments as given (unset ones left to Lightning's defaults)."""
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        out.update(self.extra)
        return out


@dataclass(frozen=True)
class RunConfig:
    name: str
    seed: int
    run_dir: str
    plugins: tuple[str, ...]
    resume: str | None
    init_from: str | None
    task: str
    overwrite: bool
    size: str | None
    model: str | None
    tokenizer: PluginChoice
    audio_encoder: PluginChoice
    vision_encoder: PluginChoice
    position: PluginChoice
    thinker: PluginChoice
    talker: PluginChoice
    codec: PluginChoice
    dit: PluginChoice
    vocoder: PluginChoice
    data: DataConfig
    optim: OptimConfig
    checkpoint: CheckpointConfig
    logger: LoggerConfig
    speech: SpeechConfig
    loss: LossConfig
    generate: GenerateConfig
    vocoder_train: VocoderTrainConfig
    perf: PerfConfig
    plan: PlanConfig
    lora: LoraConfig
    eval: EvalConfig
    trainer: TrainerArgs
    strategy: StrategyChoice

    def slot(self, name: str) -> PluginChoice:
        return getattr(self, name)

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: str) -> bool:
        return key in {f.name for f in fields(self)}

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what checkpoints and bundles store; ``load_config`` reads it back)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if hasattr(value, "to_dict"):
                value = value.to_dict()
            elif dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out
