"""Fault injection: ``kill -9`` at random points of a run's checkpoint saves, then
``resume=last``, until the run is done; its loss curve and final weights must equal an
uninterrupted run's, bit for bit.

Run by tests/checkpoints/test_fault_injection.py, or by hand for a longer sweep:

    python tests/checkpoints/kill_during_save.py DEMO_DIR WORK_DIR STRATEGY KILLS SEED

A save is a sequence of filesystem events (``torch.save``, ``fsync``, ``rename``,
``symlink``, ``unlink``/``rmtree``). The uninterrupted run records them; each killed run
dies by SIGKILL just before one of them, or for ``torch.save`` halfway through writing
the bytes. The driver imports everything once and forks one child per run (a kill is a
real SIGKILL of a real training process); the driver itself never computes, so the
children fork from a clean interpreter. ``TMPDIR`` should be on another filesystem
than ``WORK_DIR`` (the test uses a tmpfs): it must be empty after every kill.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import signal
import sys
from pathlib import Path

import torch

from omnitrain.checkpoints import open_checkpoint
from omnitrain.checkpoints.atomic import is_complete, newest_complete, step_checkpoints, step_of
from omnitrain.cli import main
from omnitrain.training.callbacks.checkpoint_callback import StepCheckpoints

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.helpers import smoke_overrides  # noqa: E402

STEPS = 20  # one save per step: 20 saves
KEEP = 3  # checkpoint.keep: the step checkpoints a finished run leaves
PATCHED = [(os, "fsync"), (os, "replace"), (os, "rename"), (os, "symlink"), (os, "unlink"), (os, "remove"),
           (shutil, "rmtree"), (torch, "save")]


def overrides(demo: Path, run: Path, strategy: str, *extra: str) -> list[str]:
    return smoke_overrides(demo, run, f"strategy={strategy}", f"trainer.max_steps={STEPS}", "checkpoint.every_n_steps=1",
                           f"checkpoint.keep={KEEP}", "optim.schedule=constant", "trainer.log_every_n_steps=1",
                           "trainer.limit_val_batches=0", "data.epoch_batches=1000", *extra)


def install_probes(kill_at: int | None, record: list, killed: Path) -> None:
    """Count the filesystem events of every save; SIGKILL this process at event ``kill_at``."""
    state = {"saving": False, "step": None}

    def counted(method):  # writing a checkpoint, and completing it (at the next hook)
        def run(self, trainer, *args):
            outer = state["saving"]  # _save_checkpoint calls complete_pending first
            state["saving"], state["step"] = True, trainer.global_step
            try:
                return method(self, trainer, *args)
            finally:
                state["saving"] = outer
        return run

    StepCheckpoints._save_checkpoint = counted(StepCheckpoints._save_checkpoint)
    StepCheckpoints.complete_pending = counted(StepCheckpoints.complete_pending)

    def probe(module, name, fn):
        def wrapped(*args, **kwargs):
            if state["saving"]:
                record.append((state["step"], name))
                if len(record) == kill_at:
                    killed.write_text(json.dumps([state["step"], name]))
                    if name == "save":  # die with the file half written
                        buffer = io.BytesIO()
                        fn(args[0], buffer)
                        data = buffer.getvalue()
                        target = args[1]
                        if hasattr(target, "write"):
                            target.write(data[: len(data) // 2])
                            target.flush()
                        else:
                            with open(target, "wb") as f:
                                f.write(data[: len(data) // 2])
                    os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        setattr(module, name, wrapped)

    for module, name in PATCHED:
        probe(module, name, getattr(module, name))


def run_child(args: list[str], log: Path, kill_at: int | None = None) -> tuple[int, list]:
    """Fork, train ``args`` in the child; returns (exit code or -signal, its events, or the
    one it was killed at)."""
    events_file, killed = log.with_suffix(".events.json"), log.with_suffix(".killed.json")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            record: list = []
            install_probes(kill_at, record, killed)
            code = main(["train", *args])
            events_file.write_text(json.dumps(record))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    written = events_file if events_file.exists() else killed
    return code, json.loads(written.read_text()) if written.exists() else []


def losses(run: Path) -> dict[int, float]:
    with open(run / "csv" / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


def weights(ckpt: Path) -> dict[str, torch.Tensor]:
    out = {}
    open_checkpoint(ckpt).stream(lambda name, offset, flat: out.setdefault(name, flat.clone()))
    return out


def check_kept(run: Path) -> None:
    """A finished run leaves its KEEP newest step checkpoints, ``last.ckpt`` on the newest."""
    folder = run / "checkpoints"
    kept = [f"step-{s:06d}.ckpt" for s in range(STEPS - KEEP + 1, STEPS + 1)]
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["last.ckpt", *kept], names
    assert os.readlink(folder / "last.ckpt") == kept[-1]


def check_after_kill(run: Path, before: Path | None, tmpdir: Path) -> Path | None:
    """Never lose the newest complete checkpoint; every complete one reads; TMPDIR is clean."""
    folder = run / "checkpoints"
    now = newest_complete(folder) if folder.is_dir() else None
    if before is not None:
        assert now is not None, f"the kill lost every checkpoint (had {before.name})"
        assert step_of(now) >= step_of(before), f"resume=last went back from {before.name} to {now.name}"
    for ckpt in step_checkpoints(folder) if folder.is_dir() else []:
        if is_complete(ckpt):
            open_checkpoint(ckpt).verify()
    assert not files_in(tmpdir), f"left in TMPDIR: {files_in(tmpdir)}"
    return now


def files_in(tmpdir: Path) -> list[str]:
    """Files under TMPDIR (torch makes an empty ``torchinductor_$USER`` folder there when
    the optimizer imports ``torch._dynamo``: a folder, no data)."""
    return sorted(str(p.relative_to(tmpdir)) for p in tmpdir.rglob("*") if not p.is_dir())


def kill_points(events: list, saves: list[int], kills: int, rng: random.Random) -> list[tuple[int, int]]:
    """``kills`` (save, event index) pairs in run order: saves spread over the run, and in
    each an event kind drawn first, each kind once before any twice (so a few kills still
    meet a half-written file, an fsync, a rename, a symlink and a delete)."""
    chosen = sorted(rng.sample(saves, min(kills, len(saves))))
    kinds = sorted({name for _, name in events})
    rng.shuffle(kinds)
    points = []
    for n, save in enumerate(chosen):
        mine = [i for i, (step, _) in enumerate(events) if step == save]
        here = {events[i][1] for i in mine}
        kind = next((k for k in kinds[n % len(kinds):] + kinds if k in here), None) or rng.choice(sorted(here))
        points.append((save, rng.choice([i for i in mine if events[i][1] == kind])))
    return points


def sweep(demo: Path, work: Path, strategy: str, kills: int, seed: int) -> list[dict]:
    tmpdir = Path(os.environ.get("TMPDIR", "/tmp"))
    reference = work / "reference"
    code, events = run_child(overrides(demo, reference, strategy), work / "reference.log")
    assert code == 0, (work / "reference.log").read_text()[-3000:]
    saves = sorted({step for step, _ in events})
    assert len(saves) == STEPS, f"expected {STEPS} saves, recorded {saves}"
    check_kept(reference)
    by_save = {s: [i for i, (step, _) in enumerate(events) if step == s] for s in saves}

    rng, run, report, newest = random.Random(seed), work / "run", [], None
    for n, (target, index) in enumerate(kill_points(events, saves, kills, rng)):
        done = step_of(newest) if newest else 0
        if target <= done:  # an earlier kill landed after this save completed
            continue
        index -= by_save[min(s for s in saves if s > done)][0]  # the child's events start after `done`
        start = ["resume=last"] if newest else ["overwrite=true"]
        log = work / f"kill-{n}.log"
        code, at = run_child(overrides(demo, run, strategy, *start), log, kill_at=index + 1)
        assert code == -signal.SIGKILL, f"kill {n} at event {index + 1} did not kill: exit {code}\n" + log.read_text()[-3000:]
        if newest is not None:
            said = [line for line in log.read_text().splitlines() if "resume=last" in line]
            assert said and newest.name in said[0], log.read_text()[-3000:]
        newest = check_after_kill(run, newest, tmpdir)
        report.append({"killed_in_save": at[0], "before": at[1], "newest_complete": newest and newest.name})

    start = ["resume=last"] if newest else ["overwrite=true"]
    code, _ = run_child(overrides(demo, run, strategy, *start), work / "final.log")
    assert code == 0, (work / "final.log").read_text()[-3000:]
    assert losses(run) == losses(reference), "the killed-and-resumed run left the uninterrupted loss curve"
    assert sorted(losses(run)) == list(range(STEPS))
    check_kept(run)
    final = f"step-{STEPS:06d}.ckpt"
    mine, theirs = weights(run / "checkpoints" / final), weights(reference / "checkpoints" / final)
    assert mine.keys() == theirs.keys()
    different = [k for k in mine if not torch.equal(mine[k], theirs[k])]
    assert not different, f"final weights differ from the uninterrupted run's: {different[:5]}"
    assert not files_in(tmpdir), f"left in TMPDIR: {files_in(tmpdir)}"
    return report


if __name__ == "__main__":
    demo_dir, work_dir, strategy_name, kill_count, seed_value = sys.argv[1:6]
    result = sweep(Path(demo_dir), Path(work_dir), strategy_name, int(kill_count), int(seed_value))
    print(json.dumps(result))
