"""Save a checkpoint and stop at the next step boundary when the job is told to end.

Clusters end jobs with a signal: SLURM sends SIGUSR1 (``--signal=USR1@120``) before the
time limit or a preemption and SIGTERM at it; Kubernetes and torchrun send SIGTERM; a
user presses Ctrl+C. The handler only sets a flag (nothing else is safe inside one);
after the next optimizer step every rank learns whether any rank got a signal, they all
save a step checkpoint together, and once that step's metrics are logged training stops
with ``Preempted`` (exit code 128 + signal, so a scheduler sees a killed job, not a
finished one). Under SLURM, rank 0
requeues the job first, and the requeued job continues (``scripts/launch/slurm.sbatch``
passes ``resume=auto``). A second
Ctrl+C stops at once, without saving.

An exception inside training of a single process saves a checkpoint of the last
completed step too (with several processes the others are stuck in a collective, so a
save cannot be agreed); ``NonFiniteStop`` does not, so the last good checkpoint stays.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path

import lightning as L
import torch

from omnitrain.training.callbacks.checkpoint_callback import StepCheckpoints
from omnitrain.training.callbacks.nonfinite import NonFiniteStop

log = logging.getLogger("omnitrain")
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Preempted(RuntimeError):
    """Training stopped on a signal after saving; resume with ``resume=last``."""

    def __init__(self, signum: int, step: int, checkpoint: str | None, requeued: bool) -> None:
        self.signum, self.step, self.checkpoint, self.requeued = signum, step, checkpoint, requeued
        name = signal.Signals(signum).name
        where = f"saved {checkpoint}" if checkpoint else "checkpointing is off, nothing saved"
        after = "the job was requeued; it continues with resume=auto" if requeued else \
            "continue with the same command and resume=last (or resume=auto)"
        super().__init__(f"{name} received: stopped after step {step}, {where}; {after}")

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)


class SaveOnSignal(L.Callback):
    def __init__(self, checkpoints: StepCheckpoints) -> None:
        self.checkpoints = checkpoints
        self.received = 0  # the first signal's number, 0: none
        self.stop: Preempted | None = None  # saved; raised at the next batch
        self._previous: dict[int, object] = {}

    # ---- the signal handler --------------------------------------------------------
    def _handle(self, signum: int, frame) -> None:
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C: stop now
        if not self.received:
            self.received = int(signum)
            print(f"\nomnitrain: {signal.Signals(signum).name} received; saving a checkpoint after this step "
                  "and stopping" + (" (Ctrl+C again to stop without saving)" if signum == signal.SIGINT else ""),
                  flush=True)

    def on_train_start(self, trainer, pl_module) -> None:
        """After Lightning installed its own handlers (which exit 0 without a checkpoint)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    # ---- at the step boundary ---------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        """Save where ``StepCheckpoints`` would (resume is exact from there); stop once the
        step's metrics are logged, at the next batch or validation batch."""
        if self.stop is not None or trainer.fit_loop._should_accumulate():
            return  # only between optimizer steps: a mid-step save would drop accumulated gradients
        signum = self._agreed_signal(trainer)
        if not signum:
            return
        path = self._save(trainer)  # before the requeue: scontrol ends the running job
        requeued = trainer.is_global_zero and signum == signal.SIGUSR1 and requeue_slurm_job()
        self.stop = Preempted(signum, int(trainer.global_step), path, requeued)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.stop is not None:
            raise self.stop

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.stop is not None:  # validation after the saved step: not worth the grace time
            raise self.stop

    def on_train_end(self, trainer, pl_module) -> None:
        if self.stop is not None:  # the signal came with the last step: the run is complete
            log.warning("%s; training had reached its last step anyway", self.stop)
            self.stop = None

    def _agreed_signal(self, trainer) -> int:
        """The signal any rank received (one small all-reduce per step with several processes)."""
        if trainer.world_size == 1:
            return self.received
        mine = torch.tensor(self.received, device=trainer.strategy.root_device)
        return int(trainer.strategy.reduce(mine, reduce_op="max"))

    def _save(self, trainer) -> str | None:
        ck = self.checkpoints
        if ck.save_top_k == 0:
            return None  # checkpoint.keep=0: the user turned saving off
        if ck._last_global_step_saved != trainer.global_step:
            ck._save_checkpoint(trainer, ck.format_checkpoint_name(ck._monitor_candidates(trainer)))
        return ck._last_checkpoint_saved

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if isinstance(exception, (Preempted, NonFiniteStop)) or trainer.world_size > 1 or trainer.global_step == 0:
            return
        if isinstance(exception, KeyboardInterrupt) and self.received:
            return  # the second Ctrl+C: the user wants out now
        # Lightning counts the logging step of a step after its end; mid-step it is one
        # ahead of what a save at the step's end records, and a resume would log every
        # step one later (the weights, data and RNG follow global_step and are right)
        loop = trainer.fit_loop.epoch_loop
        counted = loop._batches_that_stepped
        loop._batches_that_stepped = min(counted, trainer.global_step - 1)
        try:
            path = self._save(trainer)
        except Exception as err:  # the save itself failing must not hide the original error
            log.error("could not save a checkpoint after the error: %s", err)
            return
        finally:
            loop._batches_that_stepped = counted
        if path:
            log.warning("training failed at step %d; saved %s (resume=last continues from it)",
                        trainer.global_step, Path(path).name)


def requeue_slurm_job() -> bool:
    """Under SLURM, put this job back in the queue (``scontrol requeue``); the job script
    resumes when ``SLURM_RESTART_COUNT`` is set."""
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("could not requeue SLURM job %s: %s", job, err)
        return False
    if done.returncode != 0:
        log.warning("scontrol requeue %s failed: %s", job, done.stderr.strip())
    return done.returncode == 0
