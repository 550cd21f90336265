"""Qwen2.5-Omni's speech codes as a codec slot: the vocabulary the released Talker and DiT
were trained on (8193 ids, 50 per second at 24 kHz).

The speech tokenizer that turns a waveform into these codes is not part of the released
checkpoint, so this codec cannot encode or decode on its own: it declares the code space
so an imported model builds with the right Talker and DiT tables, and ``encode`` says
plainly that spoken replies cannot be packed with it.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from omnitrain.api import Codec, register


@dataclass
class QwenCodesConfig:
    vocab_size: int = 8193  # token2wav dit_config.num_embeds
    # import-hf sets Qwen's own: 24000 Hz and 480 samples per code (BigVGAN's hop 240 x the
    # DiT's 2 mel frames per code, 50 codes/s); these defaults fit omnitrain's default speech
    # config (16 kHz, hop 320), so `codec=qwen_omni_codes` alone composes
    sample_rate: int = 16000
    hop_length: int = 640


@register("codec", "qwen_omni_codes", config=QwenCodesConfig)
class QwenCodes(Codec):
    """The code space of Qwen2.5-Omni's Talker/DiT (no encoder: it was not released)."""

    def __init__(self, cfg: QwenCodesConfig) -> None:
        self.cfg = cfg
        self.vocab_size = cfg.vocab_size
        self.sample_rate = cfg.sample_rate
        self.frame_rate = cfg.sample_rate / cfg.hop_length

    def encode(self, wave: Tensor) -> Tensor:
        raise NotImplementedError(
            "codec=qwen_omni_codes has no encoder: Qwen2.5-Omni's speech tokenizer is not part of the "
            "released checkpoint, so spoken replies cannot be packed with it. Fine-tune on replies "
            "without `speech`, or pack with a codec that encodes (codec=exported) and train the speech side anew")

    def decode(self, tokens: Tensor) -> Tensor:
        raise NotImplementedError(
            "codec=qwen_omni_codes cannot turn codes into sound by itself; the imported model's DiT and "
            "BigVGAN do (omnitrain generate --speech)")
