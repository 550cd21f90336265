"""Typed schemas for the non-plugin config sections; a mistyped key fails validation.

Plugin sections are checked against each plugin's own dataclass (``registry``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omnitrain.model.omni_model import LossConfig
from omnitrain.speech_mel import SpeechConfig


@dataclass
class DataConfig:
    train_shards: Any = None  # path, glob, brace pattern, directory, or a list of them
    val_shards: Any = None
    batch_size: int = 16  # per process (per GPU)
    global_batch_size: int | None = None  # samples per optimizer step over all processes; sets batch_size
    num_workers: int = 1
    val_num_workers: int = 0
    prefetch_factor: int = 4
    shuffle_buffer: int = 256
    epoch_batches: int = 100  # batches per rank per epoch (the same on every rank)
    max_tokens: int = 2048  # longer samples are skipped and counted


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    warmup_steps: int = 50
    schedule: str = "cosine"  # cosine | constant
    min_lr_ratio: float = 0.1
    freeze: list[str] = field(default_factory=list)  # slots whose weights stay fixed
    slot_lr: dict[str, float] = field(default_factory=dict)  # per-slot learning rates


@dataclass
class CheckpointConfig:
    every_n_steps: int = 200
    save_last: bool = True
    keep: int = -1  # how many step checkpoints to keep; -1 = all


@dataclass
class WandbConfig:
    enabled: bool = True
    mode: str = "offline"  # offline | online | disabled
    project: str = "omnitrain"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class CsvLoggerConfig:
    enabled: bool = True


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    csv: CsvLoggerConfig = field(default_factory=CsvLoggerConfig)


@dataclass
class GenerateConfig:
    max_new_tokens: int = 64
    max_codec_tokens: int = 250
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    ode_steps: int = 16
    ode_method: str = "euler"
    guidance: float = 0.0


@dataclass
class PerfConfig:
    peak_tflops: float | None = None  # one device's peak, for MFU; None = GPU data sheet if known


SECTION_SCHEMAS: dict[str, type] = {
    "data": DataConfig,
    "optim": OptimConfig,
    "checkpoint": CheckpointConfig,
    "logger": LoggerConfig,
    "speech": SpeechConfig,
    "loss": LossConfig,
    "generate": GenerateConfig,
    "perf": PerfConfig,
}

SCALAR_KEYS = {"name": str, "seed": int, "run_dir": str, "plugins": list, "resume": (str, type(None))}
