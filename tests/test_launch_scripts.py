"""The launch scripts compose the commands the README and recipes document (dry run:
no GPUs here), and the rendezvous script really launches a 2-process run."""

from __future__ import annotations

import csv
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "scripts" / "launch"


def dry_run(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LAUNCH / script), *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "DRY_RUN": "1", "PYTHON": "python", **env}, timeout=30)


def test_single_node_torchrun_one_process_per_gpu():
    out = dry_run("torchrun_single_node.sh", "omni3b_full", "optim.lr=1e-5", GPUS="8").stdout.split()
    assert out[:6] == ["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "8"]
    assert out[6:] == ["-m", "omnitrain", "train", "recipe=omni3b_full", "trainer.devices=8",
                       "trainer.num_nodes=1", "resume=auto", "optim.lr=1e-5"]


def test_multi_node_torchrun_rendezvous():
    out = dry_run("torchrun_multi_node.sh", "omni7b_full", NODES="2", MASTER_ADDR="10.0.0.1", GPUS="8").stdout
    assert "--nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint 10.0.0.1:29500" in out
    assert out.strip().endswith("recipe=omni7b_full trainer.devices=8 trainer.num_nodes=2 resume=auto")


def test_multi_node_needs_the_master_address():
    proc = dry_run("torchrun_multi_node.sh", "omni7b_full", NODES="2", GPUS="8")
    assert proc.returncode != 0 and "MASTER_ADDR" in proc.stderr


def test_slurm_one_task_per_gpu_from_the_allocation():
    out = dry_run("slurm.sbatch", "omni7b_full", SLURM_NTASKS_PER_NODE="8(x2)", SLURM_JOB_NUM_NODES="2").stdout
    assert out.split() == ["srun", "--kill-on-bad-exit=1", "python", "-m", "omnitrain", "train",
                           "recipe=omni7b_full", "trainer.devices=8", "trainer.num_nodes=2", "resume=auto"]


def test_slurm_job_is_signalled_before_its_end_and_a_requeued_job_resumes():
    """The first start and a requeued one run the same command: resume=auto starts fresh
    or continues from the newest complete checkpoint."""
    script = (LAUNCH / "slurm.sbatch").read_text()
    assert "#SBATCH --signal=USR1@120" in script and "#SBATCH --requeue" in script
    env = {"SLURM_NTASKS_PER_NODE": "8", "SLURM_JOB_NUM_NODES": "1"}
    first = dry_run("slurm.sbatch", "omni3b_full", **env).stdout
    assert first.split()[-1] == "resume=auto"
    assert dry_run("slurm.sbatch", "omni3b_full", SLURM_RESTART_COUNT="1", **env).stdout == first


@pytest.mark.parametrize("script,env", [
    ("torchrun_single_node.sh", {"GPUS": "8"}),
    ("torchrun_multi_node.sh", {"NODES": "2", "MASTER_ADDR": "10.0.0.1", "GPUS": "8"}),
    ("slurm.sbatch", {"SLURM_NTASKS_PER_NODE": "8", "SLURM_JOB_NUM_NODES": "1"}),
])
def test_a_resume_given_by_the_user_comes_after_resume_auto(script, env):
    """Hydra keeps the last value of a key: the user's resume=PATH must follow the script's."""
    out = dry_run(script, "omni3b_full", "resume=/ckpt/step-000100.ckpt", **env).stdout.split()
    assert out.index("resume=auto") < out.index("resume=/ckpt/step-000100.ckpt")


@pytest.mark.parametrize("script", sorted(p.name for p in LAUNCH.iterdir()))
def test_every_recipe_header_names_existing_launch_scripts(script):
    headers = "".join(p.read_text().split("defaults:")[0] for p in (ROOT / "recipes").glob("omni*.yaml"))
    assert f"scripts/launch/{script}" in headers


def test_rendezvous_script_really_launches_training(demo_dir, tmp_path):
    """One node of 2 CPU processes through the c10d rendezvous, exactly as the script runs:
    DDP trains the smoke recipe's 10 steps (into a second pass of the shards), validates on
    both ranks (the logged val/loss needs both) and saves. With tests/parallel/test_rank_hang.py
    the suite's real multi-process DDP runs."""
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    env = {**os.environ, "NODES": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "GPUS": "2",
           "RDZV_ID": f"test{port}", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        ["bash", str(LAUNCH / "torchrun_multi_node.sh"), "smoke", f"data.train_shards={demo_dir}/train-*.tar",
         f"data.val_shards={demo_dir}/val-*.tar", f"run_dir={tmp_path}", "logger=csv", "strategy=ddp"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 10
    with open(tmp_path / "csv" / "metrics.csv") as f:
        assert any(r.get("val/loss") for r in csv.DictReader(f)), "validation ran on both ranks and was logged"
