"""Qwen3-Omni's speech codes as a codec slot: 16 code groups a frame, 2048 ids each, 12.5
frames a second at 24 kHz (what its Talker and code predictor make and Code2Wav decodes).
Like Qwen2.5-Omni's, the speech tokenizer that makes them from a waveform is not released:
this codec declares the code space and refuses to encode."""

from __future__ import annotations

from dataclasses import dataclass

from omnitrain.api import register
from omnitrain_plugins.qwen_omni.qwen_codes import QwenCodes


@dataclass
class Qwen3CodesConfig:
    vocab_size: int = 2048  # code2wav_config.codebook_size
    groups: int = 16  # num_quantizers
    sample_rate: int = 24000
    hop_length: int = 1920  # samples per frame: Code2Wav's upsampling, 2 x 2 x 8 x 5 x 4 x 3


@register("codec", "qwen3_omni_codes", config=Qwen3CodesConfig)
class Qwen3Codes(QwenCodes):
    """The code space of Qwen3-Omni's Talker and Code2Wav (no encoder: it was not released)."""

    def __init__(self, cfg: Qwen3CodesConfig) -> None:
        super().__init__(cfg)
        self.groups = cfg.groups

    def encode(self, wave):
        raise NotImplementedError(
            "codec=qwen3_omni_codes has no encoder: Qwen3-Omni's speech tokenizer is not part of the released "
            "checkpoint, so spoken replies cannot be packed with it. Pack with a codec that encodes and train the "
            "speech side anew, or fine-tune on replies without `speech`")

    def decode(self, tokens):
        raise NotImplementedError("codec=qwen3_omni_codes cannot turn codes into sound by itself; Code2Wav does "
                                  "(vocoder=code2wav, omnitrain generate --speech)")
