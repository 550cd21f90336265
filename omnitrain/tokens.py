"""Special tokens every tokenizer plugin must provide, by role, and the turn roles.

The core refers to special tokens by role ("audio_bos"), never by id; a tokenizer
plugin maps each role to an id in its vocabulary. ``system``/``user``/``assistant``
name the token that opens a turn of that role in omnitrain's own template; a tokenizer
with another chat template (ChatML) says how turns open and close in
``Tokenizer.turn_tokens``.
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
    "system": "<|system|>",
}

ROLES: tuple[str, ...] = ("system", "user", "assistant")
"""The roles a conversation turn may have; a ``system`` turn comes first, if at all."""

ROLE_CODES: dict[str, int] = {role: code for code, role in enumerate(ROLES, 1)}
"""Each token's turn role in ``Batch.turn_roles`` (0: padding)."""

IGNORE_INDEX = -100
