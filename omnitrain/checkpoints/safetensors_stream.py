"""Write a .safetensors file piece by piece, in any order, without holding the tensors.

The format is an 8-byte header length, a JSON header giving every tensor's dtype,
shape and byte range, then the raw bytes. All shapes are known before any data is
read (from the checkpoint's metadata), so the header is written first and each piece
is written at its place with ``os.pwrite``; a shard's pieces go straight from the
(memory-mapped) shard to the file. Closing checks that every byte was written once.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import torch

from omnitrain.checkpoints.base import CheckpointError, TensorSpec

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


class SafetensorsStreamWriter:
    def __init__(self, path: Path, specs: dict[str, TensorSpec], metadata: dict[str, str] | None = None) -> None:
        self.path = Path(path)
        self.specs = specs
        header: dict[str, object] = {"__metadata__": {"format": "pt", **(metadata or {})}}
        self.start: dict[str, int] = {}
        self.itemsize: dict[str, int] = {}
        self.written: dict[str, int] = {}
        pos = 0
        for name, spec in specs.items():
            if spec.dtype not in DTYPES:
                raise CheckpointError(f"tensor '{name}' has dtype {spec.dtype}, which safetensors cannot hold")
            size = torch.empty((), dtype=spec.dtype).element_size()
            nbytes = spec.numel * size
            header[name] = {"dtype": DTYPES[spec.dtype], "shape": list(spec.shape),
                            "data_offsets": [pos, pos + nbytes]}
            self.start[name], self.itemsize[name], self.written[name] = pos, size, 0
            pos += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors writes it
        self.data_start = 8 + len(raw)
        self.total = pos
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(self.fd, struct.pack("<Q", len(raw)) + raw)
        os.ftruncate(self.fd, self.data_start + self.total)

    def write(self, name: str, offset: int, piece: torch.Tensor) -> None:
        """Elements [offset, offset + piece.numel()) of tensor ``name`` (flattened)."""
        spec = self.specs.get(name)
        if spec is None:
            raise CheckpointError(f"the checkpoint has a tensor '{name}' the model does not")
        if piece.dtype != spec.dtype:
            piece = piece.to(spec.dtype)
        n = piece.numel()
        if offset < 0 or offset + n > spec.numel:
            raise CheckpointError(f"piece [{offset}, {offset + n}) of '{name}' lies outside its {spec.numel} elements")
        data = piece.detach().contiguous().view(torch.uint8).numpy() if n else b""
        at = self.data_start + self.start[name] + offset * self.itemsize[name]
        view = memoryview(data).cast("B") if n else b""
        while view:  # pwrite may write less than asked
            done = os.pwrite(self.fd, view, at)
            view, at = view[done:], at + done
        self.written[name] += n

    def close(self) -> None:
        os.close(self.fd)
        wrong = [f"{k} ({self.written[k]} of {s.numel})" for k, s in self.specs.items()
                 if self.written[k] != s.numel]
        if wrong:
            self.path.unlink(missing_ok=True)
            raise CheckpointError(
                f"the checkpoint did not provide every element of {len(wrong)} tensors: {wrong[:5]}"
            )

    def __enter__(self) -> SafetensorsStreamWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            os.close(self.fd)
            self.path.unlink(missing_ok=True)
