"""Checkpoints and bundles are read as data: a planted payload (a pickle whose loading
calls a function) is refused by export and by resume before anything runs it; bundle
plugin code runs only when the user says so; a truncated file is called corrupt."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from omnitrain.cli import main
from tests.helpers import smoke_overrides


class Payload:
    """Unpickling it would create ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def train(demo_dir, run, *extra):
    args = smoke_overrides(demo_dir, run, "trainer.max_steps=1", "checkpoint.every_n_steps=1",
                           "trainer.limit_val_batches=0", *extra)
    assert main(["train", *args]) == 0
    return run / "checkpoints" / "last.ckpt", args


@pytest.mark.parametrize("strategy", ["auto", "deepspeed_zero2", "fsdp"])
def test_a_planted_payload_is_refused_by_export_and_resume(strategy, demo_dir, tmp_path, capsys):
    ckpt, args = train(demo_dir, tmp_path / "run", f"strategy={strategy}")
    marker = tmp_path / "pwned"
    target = {"auto": lambda: ckpt,
              "deepspeed_zero2": lambda: next((ckpt / "checkpoint").glob("*_optim_states.pt")),
              "fsdp": lambda: ckpt / "meta.pt"}[strategy]()
    torch.save({"state_dict": {}, "optimizer_state_dict": Payload(marker)}, target.resolve())
    capsys.readouterr()
    assert main(["export", str(ckpt), str(tmp_path / "bundle")]) == 2
    assert "does not load it" in capsys.readouterr().err and not marker.exists()
    assert main(["train", *args, "trainer.max_steps=2", "resume=last"]) == 2
    assert "does not load it" in capsys.readouterr().err and not marker.exists()


def test_fsdp_metadata_with_a_payload_is_refused(demo_dir, tmp_path, capsys):
    import pickle

    ckpt, _ = train(demo_dir, tmp_path / "run", "strategy=fsdp")
    marker = tmp_path / "pwned"
    (ckpt.resolve() / ".metadata").write_bytes(pickle.dumps(Payload(marker)))
    assert main(["export", str(ckpt), str(tmp_path / "bundle")]) == 2
    assert "pathlib" in capsys.readouterr().err and not marker.exists()


def test_a_truncated_checkpoint_is_called_corrupt(demo_dir, tmp_path, capsys):
    ckpt, args = train(demo_dir, tmp_path / "run")
    data = ckpt.resolve().read_bytes()
    ckpt.resolve().write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert main(["export", str(ckpt), str(tmp_path / "bundle")]) == 2
    assert "is corrupt or truncated" in capsys.readouterr().err
    assert main(["train", *args, "trainer.max_steps=2", "resume=last"]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err


def test_bundle_plugin_code_runs_only_when_trusted(demo_dir, tmp_path, capsys):
    marker = tmp_path / "imported"
    plugin = tmp_path / "my_rope.py"
    plugin.write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).touch()\n"
        "from omnitrain.api import register\n"
        "from omnitrain_plugins.rope1d import Rope1d, Rope1dConfig\n"
        "@register('position', 'my_rope', config=Rope1dConfig)\n"
        "class MyRope(Rope1d):\n    pass\n")
    ckpt, _ = train(demo_dir, tmp_path / "run", f"plugins=[{plugin}]", "position=my_rope")
    bundle = tmp_path / "bundle"
    assert main(["export", str(ckpt), str(bundle)]) == 0
    marker.unlink()
    capsys.readouterr()
    assert main(["generate", str(bundle), "--text", "Say 1 2."]) == 2
    assert "carries plugin code (plugins/my_rope.py)" in capsys.readouterr().err and not marker.exists()
    assert main(["generate", str(bundle), "--text", "Say 1 2.", "--trust-plugins"]) == 0
