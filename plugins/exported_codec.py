"""Bring your own pretrained codec: programs exported with ``torch.export``, read from a
local folder (nothing is downloaded).

The folder (``codec.path``) holds::

    codec.json    {"vocab_size": 4096, "sample_rate": 16000, "hop_length": 640}
    encode.pt2    wave (T,) float32, T a multiple of hop_length -> tokens (T / hop,) int64
    decode.pt2    tokens (n,) int64 -> wave (n * hop_length,) float32

Export a trained codec with a dynamic length that is a multiple of the hop, e.g.
``n = torch.export.Dim("n"); torch.export.export(enc, (wave,), dynamic_shapes=({0: hop * n},))``
then ``torch.export.save(program, "encode.pt2")``. ``omnitrain export`` copies the folder
into bundles. Shards store the tokens computed when they were built.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from omnitrain.api import PretrainedCodec, register


@dataclass
class ExportedCodecConfig:
    path: str = ""  # folder with codec.json, encode.pt2, decode.pt2


@register("codec", "exported", config=ExportedCodecConfig)
class ExportedCodec(PretrainedCodec):
    """A pretrained codec exported with torch.export (encode.pt2 / decode.pt2)."""

    FILES = ("codec.json", "encode.pt2", "decode.pt2")

    def load(self, path: Path) -> None:
        missing = [f for f in self.FILES if not (path / f).is_file()]
        if missing:
            raise FileNotFoundError(f"codec.path='{path}' lacks {missing} (needs {list(self.FILES)})")
        meta = json.loads((path / "codec.json").read_text())
        self.vocab_size = int(meta["vocab_size"])
        self.sample_rate = int(meta["sample_rate"])
        self.hop_length = int(meta["hop_length"])
        self.frame_rate = self.sample_rate / self.hop_length
        self._programs: dict[str, torch.nn.Module] = {}

    def _program(self, name: str) -> torch.nn.Module:
        if name not in self._programs:  # loaded on first use: building a model needs only the json
            self._programs[name] = torch.export.load(str(self.path / f"{name}.pt2")).module()
        return self._programs[name]

    @torch.no_grad()
    def encode(self, wave: Tensor) -> Tensor:
        wave = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
        n = wave.numel() // self.hop_length
        if n == 0:
            return torch.zeros(0, dtype=torch.long)
        return self._program("encode")(wave[: n * self.hop_length]).long()

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        tokens = torch.as_tensor(tokens, dtype=torch.long).reshape(-1).clamp(0, self.vocab_size - 1)
        if tokens.numel() == 0:
            return torch.zeros(0)
        return self._program("decode")(tokens).float().reshape(-1)

    def __getstate__(self) -> dict:  # data workers reload the programs themselves
        return {**self.__dict__, "_programs": {}}
