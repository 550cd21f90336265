"""Typed schemas for the non-plugin config sections; a mistyped key fails validation.

Plugin sections are checked against each plugin's own dataclass (``registry``).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any

from omnitrain.features.speech_mel import SpeechConfig
from omnitrain.ranges import bounded, one_of


@dataclass(frozen=True)
class LossConfig:
    text: float = bounded(1.0, ge=0)
    codec: float = bounded(1.0, ge=0)
    flow: float = bounded(1.0, ge=0)
    flow_cond_drop: float = bounded(0.1, ge=0, le=1)  # condition dropout, enables classifier-free guidance
    flow_ref_drop: float = bounded(0.2, ge=0, le=1)  # reference-only dropout: the DiT also speaks without one
    talker_detach_thinker: bool = False  # True: talker gradients stop at the Thinker
    # coefficients of the losses plugins return by name (a router's, a Talker's code groups),
    # overriding the defaults each plugin declares (``named_losses``); `omnitrain list` shows them
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DataConfig:
    train_shards: Any = None  # path, glob, brace pattern, directory, or a list of them
    val_shards: Any = None
    batch_size: int = bounded(16, ge=1)  # per process (per GPU)
    global_batch_size: int | None = bounded(None, ge=1)  # samples per optimizer step over all processes; sets batch_size
    num_workers: int = bounded(1, ge=0)
    val_num_workers: int = bounded(0, ge=0)
    prefetch_factor: int = bounded(4, ge=1)
    shuffle_buffer: int = bounded(256, ge=1)
    index: str | None = None  # index.json (path or URL) with each shard's samples; default: the one beside the shards
    epoch_batches: int | None = bounded(None, ge=1)  # cap an epoch at this many batches per rank; the next continues the pass. None: an epoch is one pass
    log_samples: bool = one_of(False, False, True)  # <run_dir>/data_log/rank-<R>.jsonl: the samples of every optimizer step
    max_tokens: int = bounded(2048, ge=1)  # longer samples are skipped and counted
    pack_length: int | None = bounded(None, ge=1)  # pack several samples per row up to this many tokens
    batching: str = one_of("samples", "samples", "tokens")  # samples: batch_size samples per step; tokens: a token budget
    rows_per_batch: int = bounded(4, ge=1)  # batching=tokens: rows of pack_length tokens per step
    budget_buffer: int = bounded(64, ge=1)  # batching=tokens: samples held back to fill rows


@dataclass(frozen=True)
class OptimConfig:
    lr: float = bounded(1e-3, gt=0)
    weight_decay: float = bounded(0.01, ge=0)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = bounded(1e-8, gt=0)
    warmup_steps: int = bounded(50, ge=0)
    schedule: str = one_of("cosine", "cosine", "constant")  # cosine | constant
    min_lr_ratio: float = bounded(0.1, ge=0, le=1)
    freeze: list[str] = field(default_factory=list)  # slots whose weights stay fixed
    slot_lr: dict[str, float] = field(default_factory=dict)  # per-slot learning rates
    nonfinite_patience: int = bounded(3, ge=1)  # non-finite steps in a row (each skipped) that stop the run
    fused: bool | None = one_of(None, None, True, False)  # fused AdamW kernel; null: when every weight is on a GPU


@dataclass(frozen=True)
class CheckpointConfig:
    every_n_steps: int = bounded(200, ge=1)
    save_last: bool = True
    keep: int = bounded(-1, ge=-1)  # how many step checkpoints to keep; -1 = all


@dataclass(frozen=True)
class WandbConfig:
    enabled: bool = True
    mode: str = one_of("offline", "offline", "online", "disabled")  # offline | online | disabled
    project: str = "omnitrain"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CsvLoggerConfig:
    enabled: bool = True


@dataclass(frozen=True)
class TensorboardLoggerConfig:
    enabled: bool = False  # event files in runs/<name>/tensorboard (logger=tensorboard)


@dataclass(frozen=True)
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    csv: CsvLoggerConfig = field(default_factory=CsvLoggerConfig)
    tensorboard: TensorboardLoggerConfig = field(default_factory=TensorboardLoggerConfig)
    samples: int = bounded(2, ge=0)  # validation prompts the model answers at each validation (0: none)


@dataclass(frozen=True)
class GenerateConfig:
    max_new_tokens: int = bounded(64, ge=1)
    max_codec_tokens: int = bounded(250, ge=1)
    min_codec_tokens: int = bounded(0, ge=0)  # no codec eos before this many tokens
    temperature: float = bounded(0.0, ge=0)  # Thinker; 0 = greedy
    top_k: int = bounded(0, ge=0)
    top_p: float = bounded(1.0, gt=0, le=1)
    # Talker sampling (Qwen2.5-Omni's defaults: 0.9, 40, 0.8, 1.05)
    talker_temperature: float = bounded(0.0, ge=0)
    talker_top_k: int = bounded(0, ge=0)
    talker_top_p: float = bounded(1.0, gt=0, le=1)
    repetition_penalty: float = bounded(1.0, gt=0)
    ode_steps: int = bounded(16, ge=1)  # intervals of the flow ODE (transformers' num_steps counts points: +1)
    ode_method: str = one_of("euler", "euler", "rk4", "rk4_38")  # euler | rk4 | rk4_38 (Qwen2.5-Omni)
    ode_sway: float = bounded(0.0, ge=-1, le=1)  # sway sampling (Qwen2.5-Omni: -1.0)
    guidance: float = bounded(0.0, ge=0)  # classifier-free guidance (Qwen2.5-Omni: 0.5)
    seed: int = bounded(0, ge=0)  # of the DiT's starting noise, so a reply is reproducible
    speaker: str | None = None  # a name from speech.speakers; None = the first
    system: str | None = None  # system prompt of conversations without one; None = the tokenizer's default
    # streaming: "exact" decodes each stage of the ODE block by block (the same mel as
    # the full decode); "window" solves each block on its own window (Qwen's streaming,
    # lower latency, approximate)
    stream_mode: str = one_of("exact", "exact", "window")


@dataclass(frozen=True)
class VocoderTrainConfig:
    """The vocoder stage (task=vocoder): HiFi-GAN/BigVGAN losses and optimizer."""

    segment_frames: int = bounded(32, ge=1)  # mel frames per training segment (x hop samples)
    lr: float = bounded(2.0e-4, gt=0)
    betas: list[float] = field(default_factory=lambda: [0.8, 0.99])
    mel_weight: float = bounded(45.0, ge=0)
    fm_weight: float = bounded(2.0, ge=0)
    grad_clip: float = bounded(100.0, gt=0)


@dataclass(frozen=True)
class EvalConfig:
    """Metrics of the model's own replies at each validation
    (``omnitrain.training.validation.validation_replies``): the replies to ``logger.samples`` validation prompts, split over the ranks, scored as
    ``omnitrain eval`` scores them and reduced over the ranks. ``metrics: []`` = none."""

    metrics: list[str] = field(default_factory=list)  # of accuracy, wer, cer, wer_expected, sim
    asr: str | None = None  # speech recogniser NAME[:PATH] for wer/cer (omnitrain list shows them)
    speaker: str | None = None  # speaker encoder NAME[:PATH] for sim
    reference: str | None = None  # sim: a wav of the voice the replies should have
    batch: int = bounded(8, ge=1)  # prompts the Thinker decodes together


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters on the Linear layers of chosen slots (``omnitrain.nn.lora``);
    the base weights of those slots stay fixed. ``slots: []`` (the default) = off."""

    slots: list[str] = field(default_factory=list)  # model slots given adapters, e.g. [thinker]
    rank: int = bounded(8, ge=1)
    alpha: float = bounded(16.0, gt=0)  # the update is scaled by alpha / rank
    dropout: float = bounded(0.0, ge=0, lt=1)  # on the adapter's input
    # Linear layers by last name component (q_proj) or a glob over the dotted path in the slot
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                        "gate_proj", "up_proj", "down_proj"])
    trainable: list[str] = field(default_factory=list)  # globs of other parameters (in those slots) that still train


@dataclass(frozen=True)
class PerfConfig:
    peak_tflops: float | None = bounded(None, gt=0)  # one device's peak, for MFU; None = GPU data sheet if known


@dataclass(frozen=True)
class PlanConfig:
    """The GPU layout a config is sized for: what ``omnitrain plan`` assumes unless told
    (``--gpus``/``--nodes``); a launch sets the real one (``trainer.devices/num_nodes``)."""

    gpus_per_node: int = bounded(8, ge=1)
    nodes: int = bounded(1, ge=1)
    gpu_memory_gib: float = bounded(80.0, gt=0)  # the GPU the plan checks against (H100/A100 80GB)


def schema_node(schema: type) -> Any:
    """``OmegaConf.structured(schema)`` open for merging: the schemas are frozen (consumers
    get read-only values) but composing overrides them, nested sections included. A copy of
    one made once per schema (a compose asks about 30 times; copying is 4x faster)."""
    return copy.deepcopy(_schema_node(schema))


@functools.cache
def _schema_node(schema: type) -> Any:
    from omegaconf import DictConfig, OmegaConf

    node = OmegaConf.structured(schema)

    def unfreeze(n: DictConfig) -> None:
        OmegaConf.set_readonly(n, False)
        for key in n:
            child = n._get_node(key)
            if isinstance(child, DictConfig):
                if child._metadata.object_type in (dict, None):  # a map (optim.slot_lr): its keys are the user's
                    OmegaConf.set_struct(child, False)
                unfreeze(child)

    unfreeze(node)
    return node


def register_schemas() -> None:
    """Each section's dataclass, stored as Hydra's ``schema/<section>`` node:
    ``configs/train.yaml`` starts every section from it, so defaults live here only and
    YAML groups hold overrides (idempotent)."""
    from hydra.core.config_store import ConfigStore
    global _SCHEMAS_STORED
    if tuple(SECTION_SCHEMAS.items()) == _SCHEMAS_STORED:
        return  # every compose calls this; the schemas are classes of this process
    store = ConfigStore.instance()
    for section, schema in SECTION_SCHEMAS.items():
        store.store(group="schema", name=section, node=schema_node(schema))
    _SCHEMAS_STORED = tuple(SECTION_SCHEMAS.items())


_SCHEMAS_STORED: tuple = ()


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
    "lora": LoraConfig,
    "eval": EvalConfig,
}

SCALAR_KEYS = {"name": str, "seed": int, "run_dir": str, "plugins": list, "resume": (str, type(None)),
               "init_from": (str, type(None)), "task": str, "size": str, "overwrite": bool,
               "model": (str, type(None))}
