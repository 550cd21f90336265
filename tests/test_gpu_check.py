"""``omnitrain gpu-check`` runs its cells as separate processes and tabulates them; on the
CPU (``--accelerator cpu``) the same machinery runs one cell end to end."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from omnitrain.cli import main
from omnitrain.run_config import compose_config

pytestmark = pytest.mark.slow


def test_one_cell_trains_resumes_exports_and_is_tabulated(demo_dir, tmp_path, capsys):
    """The demo-size cell's processes (train, resume, export); an --override reaches every
    stage. (At size=tiny the cell takes as long, its processes' start-up, and runs less.)"""
    out = tmp_path / "check"
    assert main(["gpu-check", "--accelerator", "cpu", "--out", str(out), "--data", str(demo_dir),
                 "--only", "baseline/auto", "--parallel", "1", "--override", "seed=7"]) == 0
    table = (out / "gpu_check.md").read_text()
    assert "| baseline/auto | pass |" in table
    (row,) = json.loads((out / "gpu_check.json").read_text())
    assert row["first_loss"] > row["last_loss"] > 0 and row["plan_gib"] > 0
    run = out / "baseline__auto"
    assert (run / "bundle" / "model.safetensors").exists()
    assert OmegaConf.load(run / "config.yaml").seed == 7 != compose_config([]).seed


def test_without_a_gpu_it_says_so(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert main(["gpu-check", "--out", str(tmp_path)]) == 2
    assert "no CUDA device" in capsys.readouterr().err
