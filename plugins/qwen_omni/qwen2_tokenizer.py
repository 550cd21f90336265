"""Qwen2.5-Omni's tokenizer: the Qwen2 byte-level BPE of a local ``tokenizer.json`` (read
with the ``tokenizers`` library, no network) and its ChatML template::

    <|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n...<|im_end|>\\n

omnitrain's special-token roles map to Qwen's tokens (``audio`` -> ``<|AUDIO|>``,
``vision_bos`` -> ``<|vision_bos|>``, ...), or to those ``tokenizer_config.json`` names
(``audio_token``, ``vision_bos_token``, ...) as transformers' processors read them;
``pad``/``eos`` are its ``pad_token``/``eos_token`` (``<|endoftext|>`` where it names none). An assistant turn trains on its content and ``<|im_end|>`` (generation stops there),
never on the ``<|im_start|>assistant\\n`` header or the newline after ``<|im_end|>``.

``default_system`` is put first in conversations without a system turn: Qwen2.5-Omni's
own prompt, which the released model needs to speak. Set it to "You are a helpful
assistant." for the chat template's fallback, or null for no system turn.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from omnitrain.api import ROLES, SPECIAL_TOKENS, Tokenizer, TurnTokens, register

QWEN_OMNI_SYSTEM = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech."
)

IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
#: omnitrain role -> Qwen2.5-Omni token: the media markers are spelled as omnitrain's own;
#: turn roles all open with <|im_start|>
ROLE_TOKENS: dict[str, str] = {
    **{role: SPECIAL_TOKENS[role] for role in
       ("audio_bos", "audio_eos", "vision_bos", "vision_eos", "audio", "image", "video")},
    **dict.fromkeys(ROLES, IM_START),
}
#: omnitrain media role -> the tokenizer_config.json key naming its token (transformers' processors read these)
CONFIG_KEYS = {"audio": "audio_token", "audio_bos": "audio_bos_token", "audio_eos": "audio_eos_token",
               "image": "image_token", "video": "video_token", "vision_bos": "vision_bos_token",
               "vision_eos": "vision_eos_token"}

#: files a bundle carries so it loads on its own (and with transformers' AutoTokenizer)
FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.json", "chat_template.jinja",
         "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt")


class TokenizerFilesError(ValueError):
    """The tokenizer folder lacks a file or a token; the message names it."""


@dataclass
class Qwen2TokenizerConfig:
    path: str = ""  # folder with tokenizer.json (+ tokenizer_config.json), e.g. a downloaded Qwen2.5-Omni
    # system prompt of conversations without one; null: none is added
    default_system: str | None = QWEN_OMNI_SYSTEM
    # pad the id space to the checkpoint's embedding rows (Qwen2.5-Omni-7B: 152064); 0 = the tokenizer's size
    vocab_size: int = 0


def _token_text(value) -> str | None:
    """A token in tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


@register("tokenizer", "qwen2", config=Qwen2TokenizerConfig)
class Qwen2Tokenizer(Tokenizer):
    """Byte-level BPE from ``tokenizer.json``; ChatML turns."""

    role_tokens = ROLE_TOKENS  # a family's defaults, where tokenizer_config.json names no token
    family = "Qwen2.5-Omni"

    def __init__(self, cfg: Qwen2TokenizerConfig | None = None) -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.cfg = cfg or Qwen2TokenizerConfig()
        self.folder = Path(self.cfg.path)
        file = self.folder / "tokenizer.json"
        if not self.cfg.path or not file.is_file():
            raise TokenizerFilesError(
                f"this tokenizer needs tokenizer.path: a folder with tokenizer.json (got '{self.cfg.path}'); "
                f"use the folder of a downloaded {self.family} (or an `omnitrain import-hf` bundle's tokenizer/)")
        self._tok = HFTokenizer.from_file(str(file))
        config_file = self.folder / "tokenizer_config.json"
        config = json.loads(config_file.read_text()) if config_file.is_file() else {}
        named = {role: _token_text(config.get(key)) for role, key in CONFIG_KEYS.items()}
        names = {**self.role_tokens, **{role: token for role, token in named.items() if token},
                 "pad": _token_text(config.get("pad_token")) or ENDOFTEXT,
                 "eos": _token_text(config.get("eos_token")) or ENDOFTEXT}
        self._special = {role: self._id(names[role], file) for role in SPECIAL_TOKENS}
        self.im_start, self.im_end = self._id(IM_START, file), self._id(IM_END, file)
        self._newline = tuple(self.encode("\n"))
        own = self._tok.get_vocab_size(with_added_tokens=True)
        if 0 < self.cfg.vocab_size < own:
            raise ValueError(f"tokenizer.vocab_size={self.cfg.vocab_size} is below the {own} ids of {file}")
        self.vocab_size = max(own, self.cfg.vocab_size)
        self._text_ids = own  # ids past this are padding rows, never text
        self.default_system = self.cfg.default_system

    def _id(self, token: str, file: Path) -> int:
        i = self._tok.token_to_id(token)
        if i is None:
            raise TokenizerFilesError(f"{file} has no token {token!r}; is it a {self.family} tokenizer?")
        return i

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode([i for i in ids if 0 <= i < self._text_ids], skip_special_tokens=True)

    def special_id(self, role: str) -> int:
        if role not in self._special:
            raise KeyError(f"no special token with role '{role}'; roles: {list(self._special)}")
        return self._special[role]

    def turn_tokens(self, role: str) -> TurnTokens:
        if role not in ("system", "user", "assistant"):
            raise KeyError(f"no turn role {role!r}; roles: system, user, assistant")
        return TurnTokens((self.im_start, *self.encode(f"{role}\n")), (self.im_end,), self._newline)

    def encode_turn_start(self, role: str, text: str) -> tuple[list[int], list[int]]:
        """``role\n`` and the first text encoded as one string, as transformers encodes the
        rendered template: a text starting with a newline merges with the header's (``\n\n``
        is one token); a token that begins in the header counts as header."""
        header = f"{role}\n"
        enc = self._tok.encode(header + text, add_special_tokens=False)
        cut = sum(1 for start, _ in enc.offsets if start < len(header))
        return [self.turn_tokens(role).open[0], *enc.ids[:cut]], list(enc.ids[cut:])

    def stop_id(self) -> int:
        return self.im_end

    def save(self, directory: Path) -> list[str]:
        directory = Path(directory)
        written = []
        for name in FILES:
            src = self.folder / name
            if src.is_file():
                if src.resolve() != (directory / name).resolve():
                    shutil.copy2(src, directory / name)
                written.append(name)
        return written
