"""Special tokens every tokenizer plugin must provide, by role.

The core refers to special tokens by role ("audio_bos"), never by id; a tokenizer
plugin maps each role to an id in its vocabulary.
"""

from __future__ import annotations

SPECIAL_TOKENS: dict[str, str] = {
    "pad": "<|pad|>",
    "eos": "<|endoftext|>",
    "user": "<|user|>",
    "assistant": "<|assistant|>",
    "audio_bos": "<|audio_bos|>",
    "audio_eos": "<|audio_eos|>",
    "vision_bos": "<|vision_bos|>",
    "vision_eos": "<|vision_eos|>",
    "audio": "<|AUDIO|>",
    "image": "<|IMAGE|>",
    "video": "<|VIDEO|>",
}

IGNORE_INDEX = -100
