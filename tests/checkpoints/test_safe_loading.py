"""Checkpoints and bundles are read as data: a planted payload (a pickle whose loading
calls a function) is refused by export and by resume before anything runs it; bundle
plugin code runs only when the user says so; a truncated file is called corrupt. The
readers themselves (``omnitrain.checkpoints.safe_load``) are tested first, in a second."""

from __future__ import annotations

import collections
import pickle
from pathlib import Path

import pytest
import torch

from omnitrain.checkpoints.base import CheckpointError
from omnitrain.checkpoints.safe_load import _first_line, load_file, load_pickle
from omnitrain.cli import main
from tests.helpers import smoke_overrides


class Payload:
    """Unpickling it would create ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


class LossScaler:
    """A type a strategy's checkpoint holds (as DeepSpeed's loss scaler) and allows."""

    def __init__(self, scale: float) -> None:
        self.scale = scale


def mapped(path: Path) -> bool:
    """Whether ``path`` is memory-mapped into this process."""
    return str(path) in Path("/proc/self/maps").read_text()


def torch_error(path: Path) -> str:
    """The first line (at most 200 characters) of what ``torch.load`` says about ``path``."""
    with pytest.raises(Exception) as err:
        torch.load(path, weights_only=True)
    return str(err.value).strip().splitlines()[0][:200]


def test_load_file_reads_tensors_and_plain_data_memory_mapped(tmp_path):
    """Export reads a 7B checkpoint without holding it: the tensors stay in the file."""
    path = tmp_path / "c.ckpt"
    torch.save({"w": torch.tensor([1.0, 2.0]), "global_step": 3, "names": ["a", "b"]}, path)
    loaded = load_file(path)
    assert loaded["w"].tolist() == [1.0, 2.0]
    assert (loaded["global_step"], loaded["names"]) == (3, ["a", "b"])
    assert mapped(path)


def test_load_file_without_mmap_reads_into_memory(tmp_path):
    path = tmp_path / "voices.pt"
    torch.save({"w": torch.tensor([1.0, 2.0])}, path)
    loaded = load_file(str(path), mmap=False)
    assert loaded["w"].tolist() == [1.0, 2.0]
    assert not mapped(path)


def test_load_file_refuses_a_payload(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / "c.ckpt"
    torch.save({"state_dict": {}, "loops": Payload(marker)}, path)
    with pytest.raises(CheckpointError) as err:
        load_file(path)
    assert not marker.exists()
    assert str(err.value) == (
        f"'{path}' holds objects other than tensors and plain data ({torch_error(path)}); omnitrain "
        "does not load it, since unpickling them could run code planted in the file")


def test_load_file_takes_the_types_a_strategy_allows(tmp_path):
    path = tmp_path / "c.ckpt"
    torch.save({"scaler": LossScaler(1024.0)}, path)
    with pytest.raises(CheckpointError, match="holds objects other than tensors"):
        load_file(path)
    assert load_file(path, allowed=[LossScaler])["scaler"].scale == 1024.0


def test_load_file_of_a_truncated_file(tmp_path):
    path = tmp_path / "c.ckpt"
    torch.save({"w": torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError) as err:
        load_file(path)
    assert str(err.value) == f"'{path}' is corrupt or truncated ({torch_error(path)})"


@pytest.mark.parametrize(("exc", "line"), [
    (ValueError("x" * 300), "x" * 200),
    (ValueError("  first line\nsecond line"), "first line"),
    (EOFError(), "EOFError"),
])
def test_first_line(exc, line):
    assert _first_line(exc) == line


def test_load_pickle_builds_the_allowed_classes(tmp_path):
    path = tmp_path / ".metadata"
    data = {"order": collections.OrderedDict(a=1, b=2), "plain": [1, "x"]}
    path.write_bytes(pickle.dumps(data))
    for allowed in ({("collections", "OrderedDict")}, {("collections", "*")}):
        loaded = load_pickle(path, allowed)
        assert loaded == data and type(loaded["order"]) is collections.OrderedDict


def test_load_pickle_refuses_any_other_class(tmp_path):
    marker, path = tmp_path / "pwned", tmp_path / ".metadata"
    path.write_bytes(pickle.dumps({"order": collections.OrderedDict(), "x": Payload(marker)}))
    with pytest.raises(CheckpointError) as err:
        load_pickle(path, {("collections", "OrderedDict"), ("torch", "*")})
    assert not marker.exists()
    assert str(err.value) == (f"'{path}' holds a {Path.touch.__module__}.{Path.touch.__qualname__}, which "
                              "omnitrain does not load (unpickling it could run code planted in the file)")


def test_load_pickle_of_a_truncated_file(tmp_path):
    path = tmp_path / ".metadata"
    path.write_bytes(pickle.dumps({"a": list(range(100))})[:50])
    with pytest.raises(pickle.UnpicklingError) as plain:
        pickle.loads(path.read_bytes())
    with pytest.raises(CheckpointError) as err:
        load_pickle(path, set())
    assert str(err.value) == f"'{path}' is corrupt or truncated ({plain.value})"


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
