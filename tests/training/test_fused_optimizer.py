"""The fused AdamW (the default on GPUs) trains under bf16 autocast with gradient
clipping: Lightning refuses any fused optimizer there, omnitrain clips itself (bf16 has
no loss scale to undo). CPU has the fused kernel too, so this runs here."""

from __future__ import annotations

import torch

from omnitrain.cli import main
from tests.helpers import smoke_overrides


def test_fused_adamw_with_clipping_under_bf16_mixed(demo_dir, tmp_path, monkeypatch):
    clip = 1e-3
    seen: list[tuple[bool, float]] = []
    step = torch.optim.AdamW.step

    def recording_step(self, *args, **kwargs):  # the gradients the optimizer is given
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        seen.append((bool(self.defaults.get("fused")), float(torch.nn.utils.get_total_norm(grads))))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", recording_step)
    args = smoke_overrides(demo_dir, tmp_path / "run", "optim.fused=true", "trainer.precision=bf16-mixed",
                           f"trainer.gradient_clip_val={clip}", "trainer.max_steps=2", "trainer.limit_val_batches=0")
    assert main(["train", *args]) == 0
    assert len(seen) == 2 and all(fused for fused, _ in seen)
    assert all(norm <= clip * 1.01 for _, norm in seen), seen  # clipped before the fused step
