"""No DiT: for a model whose vocoder decodes codec codes straight to a waveform
(``CodesVocoder``, Qwen3-Omni's Code2Wav), so there is no mel to make and no flow loss.

Registered as ``dit=none``; it has no weights. ``mel_frames_per_code`` still cuts each
spoken reply's mel to whole codes in the data (the rate check ties it to the codec).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from omnitrain.api import DiT, register


@dataclass
class NoDiTConfig:
    mel_frames_per_code: int = 2


@register("dit", "none", config=NoDiTConfig)
class NoDiT(DiT):
    """The empty DiT slot: nothing to train, nothing to run."""

    makes_mel = False

    def __init__(self, cfg: NoDiTConfig, codec_vocab_size: int, n_mels: int, num_speakers: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.mel_frames_per_code = cfg.mel_frames_per_code

    def forward(self, x: Tensor, t: Tensor, codes: Tensor, code_mask: Tensor, drop_cond: Tensor, cond=None,
                offset: int = 0) -> Tensor:
        raise TypeError("dit=none makes no mel: the vocoder decodes codes (a CodesVocoder); set loss.flow=0")
