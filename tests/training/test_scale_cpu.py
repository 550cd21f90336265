"""DeepSpeed ZeRO-2/3 (+offload) and FSDP on 2 CPU processes (gloo), launched with torchrun
as a user would, against a DDP run of the same config:

- the loss at each of 12 steps and the gradient norms match DDP (a tolerance per strategy:
  the gaps measured on 2 CPU processes, times 10);
- save -> resume continues the identical loss curve (fp32, exact equality);
- sharded checkpoints consolidate to exactly what DeepSpeed / torch consolidate;
- a ZeRO-3 checkpoint exports to a bundle whose outputs equal the trained model's;
- ZeRO-3 survives ranks whose batches differ in modalities.

Every launch has a timeout, so a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from omnitrain.bundle import export_bundle, load_bundle
from tests.helpers import model_outputs, smoke_overrides

ROOT = Path(__file__).resolve().parents[2]
STEPS, SAVE_AT, OFFLOAD_STEPS = 12, 6, 4  # 12 steps cross the smoke epoch's end (10); resumed mid-epoch
# relative gaps to DDP, 10x those measured over these steps on 2 CPU processes (1 thread each):
# the loss (ZeRO-2 0, bit-equal; ZeRO-3 and FSDP 7.0e-6; offload 2.4e-7 over its 4 steps) and each
# gradient norm (ZeRO-2 3.8e-7, ZeRO-3 and FSDP 1.3e-4: the small encoder slots; the totals 1.4e-7,
# 1.9e-6, 1.9e-6). Over the 20 steps this test ran before (issue 26) the gaps were up to 3x larger.
LOSS_TOL = {"zero2": 1e-7, "zero3": 7e-5, "fsdp": 7e-5, "offload": 2.4e-6}
GRAD_TOL = {"zero2": 3.8e-6, "zero3": 1.3e-3, "fsdp": 1.3e-3}
pytestmark = pytest.mark.slow


def launch(*args: str, timeout: int = 300) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "WANDB_MODE": "offline"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def overrides(demo_dir: Path, run: Path, strategy: str, *extra: str) -> list[str]:
    # a constant learning rate after warmup: a shorter run follows the same curve
    if strategy.startswith("deepspeed_zero3"):
        # the smoke model's tensors are all below ZeRO-3's default persistence threshold
        # (kept whole on every rank); partition every one and fetch it in small buckets,
        # as a real model's would be
        extra = ("strategy.param_persistence_threshold=0", "strategy.prefetch_bucket_size=2000", *extra)
    return smoke_overrides(demo_dir, run, "trainer.devices=2", f"strategy={strategy}",
                           f"trainer.max_steps={STEPS}", "trainer.log_every_n_steps=1",
                           f"checkpoint.every_n_steps={SAVE_AT}", "optim.schedule=constant", *extra)


def losses(run: Path) -> dict[int, float]:
    with open(run / "csv" / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


def train_and_resume(demo_dir: Path, base: Path, strategy: str, worker: bool = False) -> Path:
    """An uninterrupted run, then a run resumed from its step-10 checkpoint to step 20."""
    run = base / strategy
    args = overrides(demo_dir, run, strategy)
    if worker:
        run.mkdir(parents=True)
        launch("-m", "tests.training.scale_worker", str(run), *args)
    else:
        launch("-m", "omnitrain", "train", *args)
    resumed = base / f"{strategy}_resumed"
    ckpt = run / "checkpoints" / f"step-{SAVE_AT:06d}.ckpt"
    launch("-m", "omnitrain", "train", *overrides(demo_dir, resumed, strategy, f"resume={ckpt}"))
    return run


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scale")


@pytest.fixture(scope="module")
def ddp(demo_dir, base) -> Path:
    launch("-m", "omnitrain", "train", *overrides(demo_dir, base / "ddp", "ddp"))
    return base / "ddp"


@pytest.fixture(scope="module")
def zero2(demo_dir, base) -> Path:
    return train_and_resume(demo_dir, base, "deepspeed_zero2")


@pytest.fixture(scope="module")
def zero3(demo_dir, base) -> Path:
    return train_and_resume(demo_dir, base, "deepspeed_zero3", worker=True)


@pytest.fixture(scope="module")
def fsdp(demo_dir, base) -> Path:
    launch("-m", "omnitrain", "train", *overrides(demo_dir, base / "fsdp", "fsdp"))
    return base / "fsdp"


@pytest.fixture(scope="module")
def offload(demo_dir, base) -> Path:
    """ZeRO-3 with optimizer and parameters offloaded (DeepSpeed's CPU Adam), the first
    OFFLOAD_STEPS steps; no validation or checkpoints (covered above), to keep CI short."""
    run = base / "offload"
    launch("-m", "omnitrain", "train", *overrides(
        demo_dir, run, "deepspeed_zero3_offload", f"trainer.max_steps={OFFLOAD_STEPS}",
        "trainer.limit_val_batches=0", "checkpoint.every_n_steps=1000", "checkpoint.save_last=false"))
    return run


@pytest.mark.parametrize("strategy", ["zero2", "zero3", "fsdp", "offload"])
def test_loss_curve_matches_ddp(strategy, ddp, request):
    run = request.getfixturevalue(strategy)
    want, got = losses(ddp), losses(run)
    steps = OFFLOAD_STEPS if strategy == "offload" else STEPS
    assert sorted(got) == list(range(steps))
    for step, loss in got.items():
        assert abs(loss - want[step]) <= LOSS_TOL[strategy] * abs(want[step]), (step, loss, want[step])
    assert got[steps - 1] < got[0]  # and the curve is not flat: training happened


def grad_norms(run: Path) -> dict[int, dict[str, float]]:
    with open(run / "csv" / "metrics.csv") as f:
        return {int(r["step"]): {k: float(v) for k, v in r.items() if k.startswith("grad/norm") and v}
                for r in csv.DictReader(f) if r.get("grad/norm")}


@pytest.mark.parametrize("strategy", ["zero2", "zero3", "fsdp"])
def test_gradient_norms_match_ddp(strategy, ddp, request):
    """``grad/norm`` and ``grad/norm_<slot>`` (omnitrain.training.callbacks.tracking_grads) are the
    norms of the whole gradient, though each rank holds only its shard."""
    want, got = grad_norms(ddp), grad_norms(request.getfixturevalue(strategy))
    assert sorted(got) == list(range(STEPS)) and len(got[0]) == 6  # the total and 5 slots
    for step, norms in got.items():
        assert norms.keys() == want[step].keys()
        for name, value in norms.items():
            assert abs(value - want[step][name]) <= GRAD_TOL[strategy] * want[step][name], (step, name, value, want[step][name])


@pytest.mark.parametrize("strategy", ["zero2", "zero3"])
def test_resume_continues_the_identical_curve(strategy, request):
    run = request.getfixturevalue(strategy)
    full, resumed = losses(run), losses(run.parent / f"{run.name}_resumed")
    assert sorted(resumed) == list(range(SAVE_AT, STEPS))
    assert {s: full[s] for s in resumed} == resumed


@pytest.mark.parametrize("strategy", ["zero2", "zero3"])
def test_zero_checkpoint_consolidates_like_deepspeed(strategy, request, tmp_path):
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    ckpt = request.getfixturevalue(strategy) / "checkpoints" / "last.ckpt"
    reference = get_fp32_state_dict_from_zero_checkpoint(str(ckpt), tag="checkpoint")
    ours = load_file(export_bundle(ckpt, tmp_path / "bundle") / "model.safetensors")
    reference = {k[len("model."):]: v for k, v in reference.items()}
    assert set(ours) == set(reference)
    for name, tensor in ours.items():
        assert torch.equal(tensor, reference[name].float()), name


def test_zero3_export_reloads_with_the_trained_models_outputs(zero3, tmp_path):
    saved = torch.load(zero3 / "trained_outputs.pt", weights_only=False)
    model, _ = load_bundle(export_bundle(zero3 / "checkpoints" / "last.ckpt", tmp_path / "bundle"))
    got = model_outputs(model, saved["batch"])
    for name, want in saved["outputs"].items():  # the worker ran 1 thread; here `make test`'s 2
        gap = (got[name] - want).abs().max().item()  # measured 0 with 1 thread, 3.0e-7 with 2
        assert gap <= 3e-6, f"{name} differs by {gap}"


def test_zero3_step_with_modalities_differing_across_ranks(zero3):
    loss = float((zero3 / "mixed_modalities_step.txt").read_text())
    assert torch.isfinite(torch.tensor(loss))


def test_fsdp_sharded_checkpoint_exports_like_torch_consolidates(fsdp, tmp_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    ckpt = fsdp / "checkpoints" / "last.ckpt"
    dcp_to_torch_save(str(ckpt), str(tmp_path / "full.pt"))
    reference = torch.load(tmp_path / "full.pt", weights_only=False)["model"]
    ours = load_file(export_bundle(ckpt, tmp_path / "bundle") / "model.safetensors")
    reference = {k[len("model."):]: v for k, v in reference.items()}
    assert set(ours) == set(reference)
    for name, tensor in ours.items():
        assert torch.equal(tensor, reference[name]), name


@pytest.mark.parametrize("extra,needle", [
    (("strategy=ddp",), "was written by a deepspeed strategy and cannot be resumed with strategy=ddp"),
    (("strategy=deepspeed_zero3", "trainer.devices=1"), "holds ZeRO shards for 2 processes but this run has 1"),
])
def test_resuming_zero_shards_on_another_layout_fails_before_training(zero3, demo_dir, tmp_path, capsys, extra, needle):
    from omnitrain.cli import main

    ckpt = zero3 / "checkpoints" / "last.ckpt"
    assert main(["train", *smoke_overrides(demo_dir, tmp_path, *extra, f"resume={ckpt}")]) == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "csv").exists()
