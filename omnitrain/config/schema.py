"""Typed schemas for the non-plugin config sections; a mistyped key fails validation.

Plugin sections are checked against each plugin's own dataclass (``registry``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omnitrain.features.speech_mel import SpeechConfig


@dataclass(frozen=True)
class LossConfig:
    text: float = 1.0
    codec: float = 1.0
    flow: float = 1.0
    flow_cond_drop: float = 0.1  # condition dropout, enables classifier-free guidance
    flow_ref_drop: float = 0.2  # reference-only dropout: the DiT also speaks without one
    talker_detach_thinker: bool = False  # True: talker gradients stop at the Thinker


@dataclass(frozen=True)
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
    pack_length: int | None = None  # pack several samples per row up to this many tokens
    batching: str = "samples"  # samples: batch_size samples per step; tokens: a token budget
    rows_per_batch: int = 4  # batching=tokens: rows of pack_length tokens per step
    budget_buffer: int = 64  # batching=tokens: samples held back to fill rows


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class CheckpointConfig:
    every_n_steps: int = 200
    save_last: bool = True
    keep: int = -1  # how many step checkpoints to keep; -1 = all


@dataclass(frozen=True)
class WandbConfig:
    enabled: bool = True
    mode: str = "offline"  # offline | online | disabled
    project: str = "omnitrain"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CsvLoggerConfig:
    enabled: bool = True


@dataclass(frozen=True)
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    csv: CsvLoggerConfig = field(default_factory=CsvLoggerConfig)


@dataclass(frozen=True)
class GenerateConfig:
    max_new_tokens: int = 64
    max_codec_tokens: int = 250
    min_codec_tokens: int = 0  # no codec eos before this many tokens
    temperature: float = 0.0  # Thinker; 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    # Talker sampling (Qwen2.5-Omni's defaults: 0.9, 40, 0.8, 1.05)
    talker_temperature: float = 0.0
    talker_top_k: int = 0
    talker_top_p: float = 1.0
    repetition_penalty: float = 1.0
    ode_steps: int = 16  # intervals of the flow ODE (transformers' num_steps counts points: +1)
    ode_method: str = "euler"  # euler | rk4 | rk4_38 (Qwen2.5-Omni)
    ode_sway: float = 0.0  # sway sampling (Qwen2.5-Omni: -1.0)
    guidance: float = 0.0  # classifier-free guidance (Qwen2.5-Omni: 0.5)
    seed: int = 0  # of the DiT's starting noise, so a reply is reproducible
    speaker: str | None = None  # a name from speech.speakers; None = the first
    # streaming: "exact" decodes each stage of the ODE block by block (the same mel as
    # the full decode); "window" solves each block on its own window (Qwen's streaming,
    # lower latency, approximate)
    stream_mode: str = "exact"


@dataclass(frozen=True)
class VocoderTrainConfig:
    """The vocoder stage (task=vocoder): HiFi-GAN/BigVGAN losses and optimizer."""

    segment_frames: int = 32  # mel frames per training segment (x hop samples)
    lr: float = 2.0e-4
    betas: list[float] = field(default_factory=lambda: [0.8, 0.99])
    mel_weight: float = 45.0
    fm_weight: float = 2.0
    grad_clip: float = 100.0


@dataclass(frozen=True)
class PerfConfig:
    peak_tflops: float | None = None  # one device's peak, for MFU; None = GPU data sheet if known


@dataclass(frozen=True)
class PlanConfig:
    """The GPU layout a config is sized for: what ``omnitrain plan`` assumes unless told
    (``--gpus``/``--nodes``); a launch sets the real one (``trainer.devices/num_nodes``)."""

    gpus_per_node: int = 8
    nodes: int = 1
    gpu_memory_gib: float = 80.0  # the GPU the plan checks against (H100/A100 80GB)


def schema_node(schema: type) -> Any:
    """``OmegaConf.structured(schema)`` open for merging: the schemas are frozen (consumers
    get read-only values) but composing overrides them, nested sections included."""
    from omegaconf import DictConfig, OmegaConf

    node = OmegaConf.structured(schema)

    def unfreeze(n: DictConfig) -> None:
        OmegaConf.set_readonly(n, False)
        for key in n:
            child = n._get_node(key)
            if isinstance(child, DictConfig):
                unfreeze(child)

    unfreeze(node)
    return node


def register_schemas() -> None:
    """Each section's dataclass, stored as Hydra's ``schema/<section>`` node:
    ``configs/train.yaml`` starts every section from it, so defaults live here only and
    YAML groups hold overrides (idempotent)."""
    from hydra.core.config_store import ConfigStore
    store = ConfigStore.instance()
    for section, schema in SECTION_SCHEMAS.items():
        store.store(group="schema", name=section, node=schema_node(schema))


SECTION_SCHEMAS: dict[str, type] = {
    "data": DataConfig,
    "optim": OptimConfig,
    "checkpoint": CheckpointConfig,
    "logger": LoggerConfig,
    "speech": SpeechConfig,
    "loss": LossConfig,
    "generate": GenerateConfig,
    "vocoder_train": VocoderTrainConfig,
    "perf": PerfConfig,
    "plan": PlanConfig,
}

SCALAR_KEYS = {"name": str, "seed": int, "run_dir": str, "plugins": list, "resume": (str, type(None)),
               "init_from": (str, type(None)), "task": str, "size": str,
               "model": (str, type(None))}
