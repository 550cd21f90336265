"""One training run from a composed config: the checks that need the machine, then fit.

``omnitrain train`` calls ``train``; tests and scripts call it too, so they run the
same path a user does. Everything that can be wrong with the input (missing shards, a
world size that does not divide the global batch, a resume checkpoint of another
model shape) fails here before a model is built or a batch is read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from omegaconf import OmegaConf

from omnitrain.checkpoints.atomic import newest_complete
from omnitrain.config.typed import RunConfig
from omnitrain.config.validate import ConfigError
from omnitrain.model.meta import meta_model
from omnitrain.model.omni_model import OmniModel
from omnitrain.parallel import strategy_for, world_size_of
from omnitrain.parallel.global_batch import resolve_batch_size
from omnitrain.training.resume_check import check_resume_shapes
from omnitrain.training.stages.tasks import task_spec
from omnitrain.training.trainer_factory import build_trainer

log = logging.getLogger("omnitrain")


def resume_path(resume: str | None, run_dir: Path) -> str | None:
    """``resume=last`` (the newest complete checkpoint of ``run_dir``), ``resume=auto``
    (that checkpoint if there is one, else None: a fresh run) or a path -> an existing
    checkpoint (file or sharded folder)."""
    if not resume:
        return None
    if resume in ("last", "auto"):
        return newest_in_run_dir(resume, run_dir / "checkpoints")
    path = Path(resume)
    if not path.exists():
        raise FileNotFoundError(f"resume={resume}: checkpoint '{path}' does not exist")
    return str(path)


def newest_in_run_dir(resume: str, folder: Path) -> str | None:
    """``resume=last`` or ``resume=auto``: the newest complete checkpoint in ``folder``
    (``auto`` without one: None, a fresh run)."""
    path = newest_complete(folder) if folder.is_dir() else None
    if path is None and resume == "auto":
        return None
    if path is None:
        raise FileNotFoundError(f"resume=last: no complete checkpoint in '{folder}' (start the run "
                                "without resume or with resume=auto, or give resume=PATH)")
    pointed = (folder / "last.ckpt").resolve() if (folder / "last.ckpt").exists() else None
    if pointed != path.resolve():
        log.warning("resume=%s: last.ckpt is missing or incomplete (a save was interrupted); "
                    "resuming from the newest complete checkpoint %s", resume, path.name)
    else:
        log.warning("resume=%s: resuming from %s", resume, path.name)
    return str(path)


@dataclass
class Prepared:
    """What the checks before a run produce, each made once: the run config (per-rank
    batch size resolved from ``data.global_batch_size``), its data module, the model's
    shapes (built on the meta device) and the checkpoint to resume from."""

    cfg: RunConfig
    data: L.LightningDataModule
    meta: OmniModel
    ckpt_path: str | None
    resume_step: int | None = None  # the checkpoint's global step


def prepare(cfg: RunConfig) -> Prepared:
    """The checks before any expensive work."""
    cfg = resolve_batch_size(cfg, world_size_of(cfg))
    data = task_spec(cfg).data(cfg)
    data.check()
    if cfg.init_from and not Path(cfg.init_from).exists():
        raise FileNotFoundError(f"init_from={cfg.init_from}: no such checkpoint or bundle")
    meta = meta_model(cfg)
    ckpt_path = resume_path(cfg.resume, Path(cfg.run_dir))
    if ckpt_path is None:
        refuse_to_clobber(cfg)
        if cfg.resume == "auto":
            log.warning("resume=auto: no checkpoint in %s: starting a fresh run", Path(cfg.run_dir) / "checkpoints")
        return Prepared(cfg, data, meta, None)
    step = check_resume_shapes(cfg, Path(ckpt_path), meta)
    return Prepared(cfg, data, meta, ckpt_path, step)


def refuse_to_clobber(cfg: RunConfig) -> None:
    """A fresh run into a run_dir with checkpoints would replace them: say how to go on."""
    folder = Path(cfg.run_dir) / "checkpoints"
    found = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
    if found and not cfg.overwrite and cfg.resume == "auto":  # names of checkpoints, none complete
        raise ConfigError(
            f"resume=auto: run_dir={cfg.run_dir} holds {', '.join(found[:4])} in checkpoints/ but no complete "
            "checkpoint; give resume=PATH, or start over with overwrite=true (removes them)")
    if found and not cfg.overwrite:
        raise ConfigError(
            f"run_dir={cfg.run_dir} already holds checkpoints ({', '.join(found[:4])}); a fresh run would "
            "replace them. Continue that run with resume=last (or resume=auto), start over with "
            "overwrite=true (removes them and the run's metrics), or choose another run_dir")


def warn_if_too_big(cfg: RunConfig, meta: OmniModel) -> None:
    """On GPUs, the memory plan of this config against the device's memory: a warning
    before the launch instead of an out-of-memory error minutes into it."""
    import torch

    if str(cfg.trainer.accelerator) not in ("gpu", "cuda", "auto") or not torch.cuda.is_available():
        return
    from omnitrain.training.performance.plan import GiB, format_plan, make_plan

    world = world_size_of(cfg)
    per_node = cfg.trainer.devices if isinstance(cfg.trainer.devices, int) else world
    _, warnings = format_plan(make_plan(cfg, world, per_node, model=meta), cfg,
                              torch.cuda.get_device_properties(0).total_memory)
    for line in warnings:
        log.warning("%s (omnitrain plan gives the details; %.0f GiB GPUs)", line,
                    torch.cuda.get_device_properties(0).total_memory / GiB)


def train(cfg: RunConfig) -> tuple[L.Trainer, L.LightningModule]:
    """Train the configured task (``omnitrain.training.stages.tasks``)."""
    run = prepare(cfg)
    cfg = run.cfg
    warn_if_too_big(cfg, run.meta)
    L.seed_everything(cfg.seed, workers=True)
    # the trainer sees the checkpoint actually resumed (None: a fresh run), not "auto"
    trainer = build_trainer(cfg.replace(resume=run.ckpt_path), run.meta, run.resume_step)
    run_dir = Path(cfg.run_dir)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(cfg.to_dict()), run_dir / "config.yaml")
        strategy_for(cfg).write_files(run_dir)
    module = task_spec(cfg).module(cfg)
    trainer.fit(module, datamodule=run.data, ckpt_path=run.ckpt_path)
    return trainer, module


def teardown_distributed() -> None:
    """Destroy the process group before exit: a live gloo group at interpreter exit
    sometimes aborts ("terminate called without an active exception") after all
    work is done, which fails a finished run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
