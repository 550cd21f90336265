"""The single-file checkpoint, read and written for real (``omnitrain.checkpoints.base``,
``lightning_file``, ``direct_io``, ``safetensors_stream``): what the reader hands export
and resume, and the exact bytes of the .safetensors file export writes, read back with the
safetensors library itself. Each test takes a fraction of a second."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import struct

import pytest
import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from safetensors.torch import load_file as load_safetensors

from omnitrain.checkpoints.base import (
    CheckpointError,
    TensorSpec,
    config_from,
    export_dtype,
    model_name,
)
from omnitrain.checkpoints.direct_io import DirectCheckpointIO
from omnitrain.checkpoints.lightning_file import LightningFileReader
from omnitrain.checkpoints.safetensors_stream import SafetensorsStreamWriter
from tests.helpers import fds_on

CONFIG = {"model": {"hidden": 8}, "name": "tiny"}


# --- base -------------------------------------------------------------------------------

@pytest.mark.parametrize(("shape", "numel"), [((2, 3, 4), 24), ((7,), 7), ((), 1), ((5, 0), 0)])
def test_tensor_spec_numel(shape, numel):
    assert TensorSpec(shape, torch.float32).numel == numel


def test_tensor_spec_is_immutable():
    """Specs are shared between the reader, the planner and the writer: none may edit them."""
    spec = TensorSpec((2, 3), torch.float32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.shape = (3, 2)


def test_config_from_a_checkpoint(tmp_path):
    cfg = config_from({"hyper_parameters": {"config": CONFIG}}, tmp_path / "c.ckpt")
    assert OmegaConf.to_container(cfg) == CONFIG


@pytest.mark.parametrize("state", [{}, {"hyper_parameters": {}}, {"hyper_parameters": None}],
                         ids=["no-hyper-parameters", "no-config", "none"])
def test_config_from_a_foreign_checkpoint(tmp_path, state):
    path = tmp_path / "c.ckpt"
    with pytest.raises(CheckpointError) as err:
        config_from(state, path)
    assert str(err.value) == f"'{path}' is not an omnitrain checkpoint (no config in hyper_parameters)"


@pytest.mark.parametrize(("key", "name"), [
    ("model.thinker.x", "thinker.x"), ("model.w", "w"), ("loss_fn.weight", None), ("ema.model.w", None),
])
def test_model_name(key, name):
    assert model_name(key, "model.") == name


@pytest.mark.parametrize(("dtype", "exported"), [
    (torch.bfloat16, torch.float32), (torch.float16, torch.float32), (torch.float64, torch.float32),
    (torch.float32, torch.float32), (torch.int64, torch.int64), (torch.int8, torch.int8), (torch.bool, torch.bool),
])
def test_export_dtype(dtype, exported):
    assert export_dtype(dtype) == exported


# --- lightning_file ---------------------------------------------------------------------

def lightning_file(path, **extra):
    """A Lightning checkpoint as training saves it: model tensors under ``model.``, one
    tied pair (a single storage under two names), a view of it with another shape, and
    a tensor outside the model."""
    embed = torch.arange(12, dtype=torch.float32).reshape(4, 3).to(torch.bfloat16)
    state = {
        "model.embed.weight": embed,
        "model.head.weight": embed,  # tied to embed
        "model.flat": embed.reshape(-1),  # same storage, other shape: a tensor of its own
        "model.norm.weight": torch.tensor([0.5, 1.5, 2.5]),
        "model.positions": torch.tensor([3, 1, 4, 1, 5]),
        "loss_fn.weight": torch.tensor([9.0, 9.0]),
    }
    torch.save({"global_step": 7, "hyper_parameters": {"config": CONFIG}, "state_dict": state, **extra}, path)
    return path


def test_lightning_file_matches_a_file_only(tmp_path):
    path = lightning_file(tmp_path / "step-7.ckpt")
    assert LightningFileReader.matches(path) is True
    assert LightningFileReader.matches(tmp_path) is False
    assert LightningFileReader.matches(tmp_path / "missing.ckpt") is False


def test_lightning_file_step_and_config(tmp_path):
    reader = LightningFileReader(lightning_file(tmp_path / "step-7.ckpt"))
    reader.verify()
    assert reader.step == 7
    assert OmegaConf.to_container(reader.config()) == CONFIG


def test_lightning_file_tensors_once_each_in_export_dtypes(tmp_path):
    """Model tensors only, a tied weight under its first name, floats as fp32."""
    reader = LightningFileReader(lightning_file(tmp_path / "step-7.ckpt"))
    assert reader.tensors() == {
        "embed.weight": TensorSpec((4, 3), torch.float32),
        "flat": TensorSpec((12,), torch.float32),
        "norm.weight": TensorSpec((3,), torch.float32),
        "positions": TensorSpec((5,), torch.int64),
    }


def test_lightning_file_streams_every_tensor_whole_and_flat(tmp_path):
    reader = LightningFileReader(lightning_file(tmp_path / "step-7.ckpt"))
    pieces = []
    reader.stream(lambda name, offset, piece: pieces.append((name, offset, piece.dtype, piece.tolist())))
    embed = [float(v) for v in range(12)]
    assert pieces == [
        ("embed.weight", 0, torch.float32, embed),
        ("flat", 0, torch.float32, embed),
        ("norm.weight", 0, torch.float32, [0.5, 1.5, 2.5]),
        ("positions", 0, torch.int64, [3, 1, 4, 1, 5]),
    ]


def test_lightning_file_without_step_or_model(tmp_path):
    path = tmp_path / "c.ckpt"
    torch.save({"hyper_parameters": {"config": CONFIG}}, path)
    reader = LightningFileReader(path)
    assert reader.step is None
    assert reader.tensors() == {}


def test_lightning_file_that_is_cut_short(tmp_path):
    path = lightning_file(tmp_path / "step-7.ckpt")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="is corrupt or truncated"):
        LightningFileReader(path).verify()


# --- direct_io --------------------------------------------------------------------------

def test_direct_io_saves_into_new_folders_and_replaces_in_place(tmp_path):
    """The writer makes missing folders, writes the file whole, leaves no temporary, and a
    second save to the same path replaces it."""
    io = DirectCheckpointIO()
    path = tmp_path / "run" / "checkpoints" / "step-1.ckpt.partial"
    io.save_checkpoint({"global_step": 1, "w": torch.tensor([1.0, 2.0])}, path)
    io.save_checkpoint({"global_step": 2, "w": torch.tensor([3.0])}, str(path.with_name("other.partial")))
    io.save_checkpoint({"global_step": 3, "w": torch.tensor([4.0, 5.0])}, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["other.partial", "step-1.ckpt.partial"]
    saved = torch.load(path, weights_only=True)
    assert saved["global_step"] == 3 and saved["w"].tolist() == [4.0, 5.0]


# --- safetensors_stream -----------------------------------------------------------------

SPECS = {
    "w": TensorSpec((16, 16), torch.float32),  # 1024 bytes, more than the header
    "h": TensorSpec((3,), torch.bfloat16),
    "i": TensorSpec((), torch.int64),
    "e": TensorSpec((0, 4), torch.float16),
    "b": TensorSpec((5,), torch.bool),
}
VALUES = {
    "w": torch.arange(256, dtype=torch.float32).reshape(16, 16),
    "h": torch.tensor([1.5, -2.0, 3.25], dtype=torch.bfloat16),
    "i": torch.tensor(-7),
    "e": torch.zeros(0, 4, dtype=torch.float16),
    "b": torch.tensor([True, False, True, True, False]),
}
# by hand: tensors laid out in the order given, each nbytes = numel * element size
HEADER = {
    "__metadata__": {"format": "pt", "source": "omnitrain"},
    "w": {"dtype": "F32", "shape": [16, 16], "data_offsets": [0, 1024]},
    "h": {"dtype": "BF16", "shape": [3], "data_offsets": [1024, 1030]},
    "i": {"dtype": "I64", "shape": [], "data_offsets": [1030, 1038]},
    "e": {"dtype": "F16", "shape": [0, 4], "data_offsets": [1038, 1038]},
    "b": {"dtype": "BOOL", "shape": [5], "data_offsets": [1038, 1043]},
}


def write_all(writer, order=("b", "e", "i", "h")):
    """Every tensor, ``w`` in three pieces out of order and as float64 (the writer casts)."""
    flat = VALUES["w"].reshape(-1).double()
    for start, end in ((100, 256), (0, 40), (40, 100)):
        writer.write("w", start, flat[start:end])
    for name in order:
        writer.write(name, 0, VALUES[name].reshape(-1))


def read_header(path):
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    return length, json.loads(raw[8:8 + length]), raw


def test_safetensors_stream_header_and_layout(tmp_path):
    path = tmp_path / "model.safetensors"
    with SafetensorsStreamWriter(path, SPECS, {"source": "omnitrain"}) as writer:
        write_all(writer)
    length, header, raw = read_header(path)
    assert header == HEADER
    assert list(header)[1:] == list(SPECS)
    assert len(raw) == 8 + length + 1043


def test_safetensors_stream_reads_back_with_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    with SafetensorsStreamWriter(path, SPECS, {"source": "omnitrain"}) as writer:
        write_all(writer)
    loaded = load_safetensors(path)
    assert loaded.keys() == VALUES.keys()
    for name, value in VALUES.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), name
    with safe_open(path, "pt") as f:
        assert f.metadata() == {"format": "pt", "source": "omnitrain"}


def test_safetensors_stream_every_dtype(tmp_path):
    values = {str(dtype): torch.tensor([0, 1, 1, 0, 1]).to(dtype) for dtype in (
        torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32,
        torch.int16, torch.int8, torch.uint8, torch.bool)}
    path = tmp_path / "model.safetensors"
    with SafetensorsStreamWriter(path, {n: TensorSpec((5,), v.dtype) for n, v in values.items()}) as writer:
        for name, value in values.items():
            writer.write(name, 0, value)
    loaded = load_safetensors(path)
    for name, value in values.items():
        assert loaded[name].dtype == value.dtype and torch.equal(loaded[name], value), name
    with safe_open(path, "pt") as f:
        assert f.metadata() == {"format": "pt"}


def test_safetensors_stream_data_starts_8_byte_aligned(tmp_path):
    """Padded with spaces to a multiple of 8, whatever the header's own length."""
    residues = set()
    for extra in range(8):
        path = tmp_path / f"m{extra}.safetensors"
        with SafetensorsStreamWriter(path, {"x": TensorSpec((2,), torch.float32)}, {"k": "v" * extra}) as w:
            w.write("x", 0, torch.tensor([1.0, 2.0]))
        length, header, raw = read_header(path)
        residues.add(len(raw[8:8 + length].rstrip(b" ")) % 8)
        assert length % 8 == 0
        assert raw[8 + length:] == struct.pack("<2f", 1.0, 2.0)
    assert residues == set(range(8))  # every unpadded length met


def test_safetensors_stream_survives_short_writes(tmp_path, monkeypatch):
    """``pwrite`` may write less than asked (Linux writes at most 2 GiB per call, less than
    a 7B model's fp32 embedding): the writer goes on from where it stopped."""
    real_pwrite = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda fd, data, at: real_pwrite(fd, bytes(data[:7]), at))
    path = tmp_path / "model.safetensors"
    with SafetensorsStreamWriter(path, SPECS) as writer:
        write_all(writer)
    monkeypatch.undo()
    loaded = load_safetensors(path)
    for name, value in VALUES.items():
        assert torch.equal(loaded[name], value), name


def test_safetensors_stream_replaces_a_longer_file(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\xff" * 10_000)
    with SafetensorsStreamWriter(path, SPECS) as writer:
        write_all(writer)
    length, _, raw = read_header(path)
    assert len(raw) == 8 + length + 1043
    assert torch.equal(load_safetensors(path)["w"], VALUES["w"])


def test_safetensors_stream_file_mode(tmp_path):
    """rw-r--r-- less the umask, as any file the user writes (no execute bit)."""
    umask = os.umask(0)
    os.umask(umask)
    path = tmp_path / "model.safetensors"
    with SafetensorsStreamWriter(path, SPECS) as writer:
        write_all(writer)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 & ~umask


def test_safetensors_stream_closes_its_file(tmp_path):
    """Export writes several files per run: neither a finished nor a failed writer keeps
    its descriptor."""
    with SafetensorsStreamWriter(tmp_path / "a.safetensors", SPECS) as writer:
        write_all(writer)
    with pytest.raises(KeyError), SafetensorsStreamWriter(tmp_path / "b.safetensors", SPECS):
        raise KeyError("the model has no such tensor")
    assert fds_on(tmp_path) == []


@pytest.mark.parametrize(("offset", "n"), [(-1, 3), (254, 3), (256, 1)])
def test_safetensors_stream_refuses_a_piece_outside_its_tensor(tmp_path, offset, n):
    with SafetensorsStreamWriter(tmp_path / "m.safetensors", SPECS) as writer:
        with pytest.raises(CheckpointError) as err:
            writer.write("w", offset, torch.zeros(n))
        write_all(writer)
    assert str(err.value) == f"piece [{offset}, {offset + n}) of 'w' lies outside its 256 elements"


def test_safetensors_stream_takes_a_piece_that_ends_at_the_last_element(tmp_path):
    path = tmp_path / "m.safetensors"
    with SafetensorsStreamWriter(path, {"x": TensorSpec((4,), torch.float32)}) as writer:
        writer.write("x", 3, torch.tensor([4.0]))
        writer.write("x", 0, torch.tensor([1.0, 2.0, 3.0]))
    assert load_safetensors(path)["x"].tolist() == [1.0, 2.0, 3.0, 4.0]


def test_safetensors_stream_refuses_a_tensor_the_model_lacks(tmp_path):
    with SafetensorsStreamWriter(tmp_path / "m.safetensors", SPECS) as writer:
        with pytest.raises(CheckpointError, match="has a tensor 'extra' the model does not"):
            writer.write("extra", 0, torch.zeros(2))
        write_all(writer)


def test_safetensors_stream_refuses_a_dtype_safetensors_lacks(tmp_path):
    path = tmp_path / "m.safetensors"
    with pytest.raises(CheckpointError, match="has dtype torch.complex64, which safetensors cannot hold"):
        SafetensorsStreamWriter(path, {"w": TensorSpec((2,), torch.float32), "c": TensorSpec((2,), torch.complex64)})
    assert not path.exists()


def test_safetensors_stream_with_elements_missing_leaves_no_file(tmp_path):
    """A checkpoint that did not provide every element: an error, not a file with zeros."""
    path = tmp_path / "m.safetensors"
    with pytest.raises(CheckpointError) as err, SafetensorsStreamWriter(path, SPECS) as writer:
        writer.write("w", 0, torch.zeros(255))
        writer.write("h", 0, torch.zeros(3))
    assert str(err.value) == ("the checkpoint did not provide every element of 3 tensors: "
                              "['w (255 of 256)', 'i (0 of 1)', 'b (0 of 5)']")
    assert not path.exists()


def test_safetensors_stream_interrupted_by_an_error_leaves_no_file(tmp_path):
    """An export that fails midway leaves no half-written model.safetensors to load later."""
    path = tmp_path / "m.safetensors"
    with pytest.raises(KeyError, match="no such tensor"), SafetensorsStreamWriter(path, SPECS) as writer:
        writer.write("w", 0, torch.zeros(256))
        raise KeyError("no such tensor")
    assert not path.exists()


def test_safetensors_stream_errors_stay_the_same_when_the_file_is_gone(tmp_path):
    """The output folder removed meanwhile (a cleanup, a second export): the user sees the
    writer's own error, not a FileNotFoundError from deleting the half-written file."""
    path = tmp_path / "m.safetensors"
    with pytest.raises(CheckpointError, match="did not provide every element"), SafetensorsStreamWriter(path, SPECS):
        path.unlink()
    with pytest.raises(KeyError, match="no such tensor"), SafetensorsStreamWriter(path, SPECS):
        path.unlink()
        raise KeyError("no such tensor")
