"""Build the Lightning Trainer from the config: loggers, callbacks, strategy."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import Logger

from omnitrain.config.typed import RunConfig
from omnitrain.model.omni_model import OmniModel
from omnitrain.parallel import strategy_for
from omnitrain.training.callbacks.checkpoint_callback import StepCheckpoints
from omnitrain.training.callbacks.csv_metrics import ResumableCSVLogger
from omnitrain.training.callbacks.nonfinite import NonFiniteGuard
from omnitrain.training.callbacks.preemption import SaveOnSignal
from omnitrain.training.callbacks.sample_log import SampleLog
from omnitrain.training.callbacks.tracking_grads import GradNorms
from omnitrain.training.callbacks.tracking_progress import RunProgressBar
from omnitrain.training.performance.throughput import Throughput
from omnitrain.training.validation.audio_samples import AudioSamples


def build_loggers(cfg: RunConfig, resume_step: int | None = None) -> list[Logger]:
    """CSV (kept up to ``resume_step`` when resuming), wandb and TensorBoard, as configured."""
    run_dir = Path(cfg.run_dir)
    loggers: list[Logger] = []
    if cfg.logger.csv.enabled:
        loggers.append(ResumableCSVLogger(save_dir=str(run_dir), name="csv", version="", resume_step=resume_step))
    w = cfg.logger.wandb
    if w.enabled and w.mode != "disabled":
        from lightning.pytorch.loggers import WandbLogger

        os.environ.setdefault("WANDB_SILENT", "true")
        wandb_dir = run_dir / "wandb"
        wandb_dir.mkdir(parents=True, exist_ok=True)
        loggers.append(
            WandbLogger(
                project=w.project, entity=w.entity, name=cfg.name, save_dir=str(run_dir),
                offline=w.mode == "offline", tags=list(w.tags),
            )
        )
    if cfg.logger.tensorboard.enabled:
        loggers.append(tensorboard_logger(run_dir))
    for logger in loggers:
        logger.log_hyperparams(cfg.to_dict())
    return loggers


def tensorboard_logger(run_dir: Path) -> Logger:
    """Event files in ``run_dir/tensorboard`` (tensorboard or tensorboardX writes them)."""
    from lightning.pytorch.loggers import TensorBoardLogger

    try:
        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "logger.tensorboard.enabled=true needs tensorboardX or tensorboard: pip install tensorboardX "
            "(or choose logger=csv / logger=offline)") from exc


def build_callbacks(cfg: RunConfig, meta: OmniModel | None = None) -> list[L.Callback]:
    ck = cfg.checkpoint
    checkpoints = StepCheckpoints(str(Path(cfg.run_dir) / "checkpoints"), int(ck.every_n_steps), int(ck.keep),
                                  bool(ck.save_last), overwrite=bool(cfg.overwrite) and not cfg.resume)
    callbacks: list[L.Callback] = [
        NonFiniteGuard(int(cfg.optim.nonfinite_patience)),
        SaveOnSignal(checkpoints),
        checkpoints,
        Throughput(meta),
        GradNorms(),
        RunProgressBar(refresh_rate=max(1, int(cfg.trainer.log_every_n_steps) // 2)),
    ]
    if cfg.data.log_samples:
        callbacks.append(SampleLog(cfg.run_dir))
    if cfg.logger.csv.enabled or cfg.logger.wandb.enabled or cfg.logger.tensorboard.enabled:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
        callbacks.append(AudioSamples(cfg.run_dir, int(cfg.speech.sample_rate), int(cfg.logger.samples)))
    return callbacks


def build_trainer(cfg: RunConfig, meta: OmniModel | None = None, resume_step: int | None = None) -> L.Trainer:
    """``meta``: the model on the meta device, if the caller built it already;
    ``resume_step``: the step a resumed run continues from."""
    strategy = strategy_for(cfg)
    trainer_args = strategy.trainer_args(cfg.trainer.lightning())
    # a fresh training loader every epoch: each epoch's length is its own (omnitrain.data.datamodule)
    trainer_args.setdefault("reload_dataloaders_every_n_epochs", 1)
    loggers = build_loggers(cfg, resume_step)
    writer = strategy.checkpoint_io()
    return L.Trainer(
        **trainer_args,
        strategy=strategy.lightning(),
        plugins=[writer] if writer is not None else None,
        logger=loggers or False,
        callbacks=build_callbacks(cfg, meta),
        default_root_dir=str(cfg.run_dir),
    )
