"""Qwen3-Omni's tokenizer: Qwen2.5-Omni's byte-level BPE and ChatML turns with this
family's media tokens (``<|audio_start|><|audio_pad|><|audio_end|>``,
``<|vision_start|><|image_pad|><|vision_end|>``, ``<|video_pad|>``) and no default system
prompt (the release's chat template adds none)."""

from __future__ import annotations

from dataclasses import dataclass

from omnitrain.api import register
from omnitrain_plugins.qwen_omni.qwen2_tokenizer import (
    ROLE_TOKENS,
    Qwen2Tokenizer,
    Qwen2TokenizerConfig,
)

QWEN3_MEDIA_TOKENS = {"audio_bos": "<|audio_start|>", "audio_eos": "<|audio_end|>", "audio": "<|audio_pad|>",
                      "vision_bos": "<|vision_start|>", "vision_eos": "<|vision_end|>",
                      "image": "<|image_pad|>", "video": "<|video_pad|>"}


@dataclass
class Qwen3OmniTokenizerConfig(Qwen2TokenizerConfig):
    path: str = ""  # folder with tokenizer.json (+ tokenizer_config.json), e.g. a downloaded Qwen3-Omni
    default_system: str | None = None  # system prompt of conversations without one
    vocab_size: int = 0  # pad the id space to the checkpoint's embedding rows (Qwen3-Omni-30B: 152064)


@register("tokenizer", "qwen3_omni", config=Qwen3OmniTokenizerConfig)
class Qwen3OmniTokenizer(Qwen2Tokenizer):
    role_tokens = {**ROLE_TOKENS, **QWEN3_MEDIA_TOKENS}
    family = "Qwen3-Omni"
