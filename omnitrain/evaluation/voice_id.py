"""``--voices``: whose voice a spoken reply is. Each reply's speaker embedding is compared
with every voice's (the mean of its recordings in ``voices.jsonl``: a few utterances like the
replies tell short replies' voices apart far better than one long one); ``voice_id`` is the share of replies
nearest the voice they were asked for (the item's ``speaker``), ``voice`` in a row the
nearest one's name. The speaker similarity to the reference alone (``sim``) cannot say
whether another voice would be nearer."""

from __future__ import annotations

import torch
from torch import Tensor

from omnitrain.evaluation.scorers import SpeakerEncoder
from omnitrain.evaluation.speech_scores import read_wave


class VoiceIdentifier:
    def __init__(self, encoder: SpeakerEncoder, voices: dict[str, list[str]]) -> None:
        self.encoder = encoder
        self.embeddings = {}
        for name, paths in voices.items():
            mean = torch.stack([encoder.embed(*read_wave(p)).float() for p in paths]).mean(0)
            self.embeddings[name] = mean / mean.norm().clamp_min(1e-9)

    def nearest(self, wave: Tensor, rate: int) -> tuple[str, dict[str, float]]:
        e = self.encoder.embed(wave, rate)
        sims = {name: self.encoder.similarity(e, ref) for name, ref in self.embeddings.items()}
        return max(sims, key=sims.get), sims

    def score(self, wave: Tensor, rate: int, speaker: str | None) -> dict:
        """A row's ``voice`` (the nearest voice) and ``voice_correct`` (None without a speaker or audio)."""
        if wave.numel() == 0:
            return {"voice": None, "voice_correct": None}
        name, _ = self.nearest(wave, rate)
        return {"voice": name, "voice_correct": None if speaker is None else name == speaker}
