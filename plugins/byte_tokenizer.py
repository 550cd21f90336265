"""Byte-level tokenizer: 256 byte ids, then the special tokens. Needs no download.

The ``system`` turn token is byte 0xFF, which UTF-8 text never contains: adding the
system role kept every other id and the vocabulary size, so checkpoints trained before
it load unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from omnitrain.api import SPECIAL_TOKENS, Tokenizer, register

SYSTEM_ID = 0xFF  # never produced by UTF-8 encoding


@dataclass
class ByteTokenizerConfig:
    # pad the id space (embedding and LM-head rows) to this size; 0 = 256 bytes + the
    # specials. Recipes shaped like a real model set its vocabulary size, so parameter
    # counts and memory plans match it; the extra ids are never produced.
    vocab_size: int = 0
    # system text put first in every conversation without a system turn (training and
    # generation alike); None: none is added
    default_system: str | None = None


@register("tokenizer", "byte", config=ByteTokenizerConfig)
class ByteTokenizer(Tokenizer):
    """UTF-8 bytes as ids 0-255, special tokens after them."""

    def __init__(self, cfg: ByteTokenizerConfig | None = None) -> None:
        self.cfg = cfg or ByteTokenizerConfig()
        after_bytes = [role for role in SPECIAL_TOKENS if role != "system"]
        self._special = {role: 256 + i for i, role in enumerate(after_bytes)}
        self._special["system"] = SYSTEM_ID
        needed = 256 + len(after_bytes)
        padded = getattr(self.cfg, "vocab_size", 0)  # subclasses may bring their own config
        if 0 < padded < needed:
            raise ValueError(f"tokenizer.vocab_size={padded} is below the {needed} ids bytes and specials need")
        self.vocab_size = max(needed, padded)
        self.default_system = getattr(self.cfg, "default_system", None)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if i < 256 and i != SYSTEM_ID).decode("utf-8", errors="replace")

    def special_id(self, role: str) -> int:
        if role not in self._special:
            raise KeyError(f"no special token with role '{role}'; roles: {list(self._special)}")
        return self._special[role]

    def save(self, directory: Path) -> list[str]:
        spec = {
            "type": "byte",
            "vocab_size": self.vocab_size,
            "special_tokens": {SPECIAL_TOKENS[r]: i for r, i in self._special.items()},
        }
        (Path(directory) / "tokenizer.json").write_text(json.dumps(spec, indent=2))
        return ["tokenizer.json"]
