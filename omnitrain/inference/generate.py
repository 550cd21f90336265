"""Generate a reply (text, then speech) from an exported bundle.

The prompt goes through the same ``SampleBuilder`` as training data, so tokens,
layout and position ids match what the model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from omnitrain.bundle import load_bundle
from omnitrain.config.schema import GenerateConfig
from omnitrain.data.collate import collate
from omnitrain.data.sample_builder import Example, SampleBuilder
from omnitrain.inference.sampling import sample_next
from omnitrain.layout import TextSeg


@dataclass
class Reply:
    text: str
    token_ids: list[int]
    codec_tokens: Tensor  # (n,)
    wave: Tensor  # (samples,) at ``sample_rate``
    sample_rate: int


def user_turn(text: str, audio: str | None = None, image: str | None = None,
              video: str | None = None, video_audio: bool = True) -> dict:
    """A one-turn conversation; media first, then the question (as in the demo data)."""
    content: list[dict] = []
    if audio:
        content.append({"audio": audio})
    if image:
        content.append({"image": image})
    if video:
        content.append({"video": video, "use_audio": video_audio})
    content.append({"text": text})
    return {"turns": [{"role": "user", "content": content}]}


def _read_file(name: str) -> bytes:
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"media file '{name}' does not exist")
    return path.read_bytes()


class Generator:
    def __init__(self, bundle: Path, settings: GenerateConfig | None = None) -> None:
        self.model, self.cfg = load_bundle(bundle)
        self.settings = settings or GenerateConfig(**self.cfg.get("generate", {}))
        self.builder = SampleBuilder.from_config(self.cfg)
        self.eos = self.builder.special["eos"]
        self.pad = self.builder.special["pad"]

    def prompt(self, conversation: dict) -> Example:
        return self.builder.build(conversation, _read_file, key="prompt", for_generation=True)

    @torch.no_grad()
    def reply_text(self, example: Example, max_new_tokens: int | None = None) -> tuple[list[int], Tensor, Tensor, int]:
        """Decode until eos. Returns (new ids, final hidden, embeddings, prompt length)."""
        s, m = self.settings, self.model
        batch = collate([example], self.pad)
        prompt_embeds = m.embed_inputs(batch)
        layout = list(example.layout)
        new: list[int] = []
        for _ in range(max_new_tokens or s.max_new_tokens):
            hidden, embeds = self._forward(prompt_embeds, new, layout)
            nxt = int(sample_next(m.thinker.logits(hidden[:, -1]), s.temperature, s.top_k, s.top_p)[0])
            new.append(nxt)
            if nxt == self.eos:
                break
        hidden, embeds = self._forward(prompt_embeds, new, layout)
        return new, hidden, embeds, prompt_embeds.shape[1]

    def _forward(self, prompt_embeds: Tensor, new: list[int], layout) -> tuple[Tensor, Tensor]:
        m = self.model
        ids = torch.tensor([new], dtype=torch.long)
        embeds = torch.cat([prompt_embeds, m.thinker.embed(ids)], dim=1)
        full_layout = layout + ([TextSeg(len(new))] if new else [])
        positions = m.position.position_ids(full_layout)[:, None]
        doc_ids = torch.ones(1, embeds.shape[1], dtype=torch.long)
        return m.thinker(embeds, positions, doc_ids), embeds

    @torch.no_grad()
    def speak(self, hidden: Tensor, embeds: Tensor, reply_positions: Tensor) -> tuple[Tensor, Tensor]:
        s, m = self.settings, self.model
        reply = hidden[0, reply_positions][None] + embeds[0, reply_positions][None]
        mask = torch.ones(1, reply.shape[1], dtype=torch.bool)
        codes = m.talker.generate(reply, mask, s.max_codec_tokens, temperature=s.temperature,
                                  top_k=s.top_k, top_p=s.top_p)[0]
        codes = codes[codes < m.codec.vocab_size]  # drop eos/pad
        if codes.numel() == 0:
            return codes, torch.zeros(0)
        wave = m.speech_to_wave(codes[None], torch.ones_like(codes[None], dtype=torch.bool),
                                s.ode_steps, s.ode_method, s.guidance)[0]
        return codes, wave

    def __call__(self, conversation: dict) -> Reply:
        example = self.prompt(conversation)
        new, hidden, embeds, start = self.reply_text(example)
        positions = torch.arange(start, start + len(new))
        codes, wave = self.speak(hidden, embeds, positions)
        text = self.model.tokenizer.decode([t for t in new if t != self.eos])
        return Reply(text, new, codes, wave, self.model.speech_cfg.sample_rate)
