"""A rank that hangs ends the whole job, and ``resume=auto`` goes on, on another number
of ranks, training the rest of the data pass exactly once.

A real 2-process DDP job (gloo on CPU) under torchrun; once it has saved a checkpoint,
rank 1 is frozen with SIGSTOP (as a rank stuck in a driver call or swapping would be).
Rank 0 waits in its next collective for ``strategy.timeout_s``, fails, and torchrun then
stops the job: SIGTERM to the frozen rank, which cannot act on it, and SIGKILL after
torchrun's grace. A user's torchrun waits a fixed 30 s there (``PContext.close``), so their job
ends, non-zero, within about ``timeout_s + 30 s`` of the hang (measured: 41 s with timeout_s=10
on 2 CPU cores). The test launches the same torchrun with that grace at 2 s
(``short_grace_torchrun.py``), to spend 28 s less waiting; nothing of omnitrain runs there.
The same command on one process then resumes from the newest complete checkpoint and
finishes; the two runs' ``data.log_samples`` logs together hold the first pass's
samples exactly once (elastic resume of the data stream), on uneven shards read by 2 loader
workers per rank.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch

from omnitrain.checkpoints.atomic import newest_complete, step_of
from tests.data.uneven import SIZES, write_uneven
from tests.helpers import smoke_overrides

TIMEOUT_S = 10  # strategy.timeout_s: what a collective waits for the frozen rank (and the first collective at start)
TORCHRUN_GRACE_S = 2  # torchrun's SIGTERM -> SIGKILL wait for a worker (30 s in a user's torchrun)
SHORT_GRACE_TORCHRUN = Path(__file__).with_name("short_grace_torchrun.py")
SLACK_S = 20  # the failing rank's exit and torchrun's polling, on a busy 2-core machine
STEPS = 30  # a step takes ~0.1 s: the hang (after step 2) comes long before the end


def command(demo_dir: Path, run: Path, processes: int = 2) -> list[str]:
    """Training on uneven shards (written beside ``run``) with 2 loader workers per rank."""
    launch = ([str(SHORT_GRACE_TORCHRUN), str(TORCHRUN_GRACE_S), "--standalone", "--nproc_per_node", str(processes)]
              if processes > 1 else [])
    return [sys.executable, *launch, "-m", "omnitrain", "train",
            *smoke_overrides(demo_dir, run, f"trainer.devices={processes}", "strategy=ddp",
                             f"data.train_shards={run.parent / 'shards'}/train-*.tar", "data.num_workers=2",
                             f"strategy.timeout_s={TIMEOUT_S}",
                             "checkpoint.every_n_steps=1", f"trainer.max_steps={STEPS}", "data.epoch_batches=100",
                             "trainer.limit_val_batches=0", "trainer.log_every_n_steps=1", "resume=auto",
                             "data.log_samples=true")]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}  # TORCH_EXTENSIONS_DIR: conftest


def workers_by_rank(launcher: psutil.Process) -> dict[str, psutil.Process]:
    """torchrun's worker processes, by the RANK torchrun gave each."""
    found = {}
    for child in launcher.children():  # torchrun starts its workers itself
        try:
            rank = child.environ().get("RANK")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if rank is not None:
            found.setdefault(rank, child)
    return found


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("step-*.ckpt")}


def hang_rank_one(demo_dir: Path, run: Path, log: Path) -> tuple[int, float]:
    """Start the job, SIGSTOP rank 1 after the second checkpoint; (exit status, seconds
    from the SIGSTOP to the job's end)."""
    with open(log, "w") as out:
        job = subprocess.Popen(command(demo_dir, run), env=environment(), stdout=out, stderr=subprocess.STDOUT)
    frozen: psutil.Process | None = None
    try:
        deadline = time.monotonic() + 180
        while not (run / "checkpoints" / "step-000002.ckpt").exists():
            assert job.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the job never saved step 2"
            time.sleep(0.01)
        workers = workers_by_rank(psutil.Process(job.pid))
        assert sorted(workers) == ["0", "1"], workers
        frozen = workers["1"]
        frozen.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            code = job.wait(timeout=TIMEOUT_S + TORCHRUN_GRACE_S + 3 * SLACK_S)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the job still runs {time.monotonic() - stopped:.0f} s after a rank "
                                 f"hung:\n{log.read_text()[-3000:]}") from None
        return code, time.monotonic() - stopped
    finally:  # nothing of the job outlives the test
        if frozen is not None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    frozen.send_signal(sig)
                except psutil.NoSuchProcess:
                    break
        if job.poll() is None:
            for worker in workers_by_rank(psutil.Process(job.pid)).values():
                worker.kill()
            job.kill()
            job.wait()


def test_a_hung_rank_ends_the_job_and_resume_auto_finishes_on_one_process(demo_dir, tmp_path):
    run, log = tmp_path / "run", tmp_path / "hung.log"
    write_uneven(demo_dir, tmp_path / "shards")  # 61 samples in shards of 3, 29, 1, 17, 11
    code, took = hang_rank_one(demo_dir, run, log)
    print(f"the job ended {took:.1f} s after rank 1 hung (strategy.timeout_s={TIMEOUT_S})")
    text = log.read_text()
    assert code != 0, text[-3000:]
    assert TIMEOUT_S - 2 <= took <= TIMEOUT_S + TORCHRUN_GRACE_S + SLACK_S, f"ended {took:.1f} s after the hang"
    assert f"Timed out waiting {TIMEOUT_S * 1000}ms" in text, "rank 0 did not fail on the collective's timeout"
    folder = run / "checkpoints"
    newest = newest_complete(folder)
    assert newest is not None and step_of(newest) < STEPS, "the hung job did not stop early"
    before = {k: v for k, v in stamps(folder).items() if step_of(Path(k)) <= step_of(newest)}

    # the same command on one process (a DDP checkpoint resumes on another world size)
    done = subprocess.run(command(demo_dir, run, processes=1), env=environment(), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if "resume=auto" in line]
    assert said and all(newest.name in line for line in said), said
    after = stamps(folder)
    assert {k: after.get(k) for k in before} == before, "checkpoints up to the resumed one were saved again"
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == STEPS
    resumed_at = step_of(newest)
    keys = []  # pass 0: both ranks' steps up to the checkpoint, then the one process's
    for rank in (0, 1):
        for line in (run / "data_log" / f"rank-{rank}.jsonl").read_text().splitlines():
            entry = json.loads(line)
            if entry["epoch"] == 0 and (rank == 0 or entry["step"] < resumed_at):
                keys += entry["keys"]
    assert len(keys) == len(set(keys)) == sum(SIZES)
