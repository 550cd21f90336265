"""Generate a reply (text, then speech) from an exported bundle, whole or streaming.

The prompt goes through the same ``SampleBuilder`` as training data, so tokens,
layout and position ids match what the model was trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from omnitrain.bundle import load_bundle
from omnitrain.config.schema import GenerateConfig
from omnitrain.data.collate import collate
from omnitrain.data.media import load_audio
from omnitrain.data.sample_builder import Example, SampleBuilder
from omnitrain.features.speech_mel import SpeechMel
from omnitrain.inference.sampling import sample_next
from omnitrain.inference.streaming import AudioPiece, SpeechStream, TextPiece
from omnitrain.model.flow_matching import sample_mel
from omnitrain.positions.layout import TextSeg
from omnitrain.slots import SpeechCondition, TalkerContext


class GenerateError(ValueError):
    """A generation request that cannot be served; the message says what to change."""


@dataclass
class Reply:
    text: str
    token_ids: list[int]
    codec_tokens: Tensor  # (n,)
    wave: Tensor  # (samples,) at ``sample_rate``
    sample_rate: int
    mel: Tensor | None = None  # (frames, n_mels) the DiT's output


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
        self.speakers = list(self.model.speech_cfg.speakers)

    def prompt(self, conversation: dict) -> Example:
        return self.builder.build(conversation, _read_file, key="prompt", for_generation=True)

    # ---- conditioning ------------------------------------------------------------
    def condition(self, speaker: str | None = None, reference: str | None = None) -> SpeechCondition:
        """Who speaks: a name from ``speech.speakers`` and optionally a reference wav."""
        name = speaker or self.settings.speaker or self.speakers[0]
        if name not in self.speakers:
            raise GenerateError(f"unknown speaker {name!r}; this model knows {self.speakers} "
                                "(speech.speakers of its training config)")
        cfg = self.model.speech_cfg
        if reference:
            wave = load_audio(_read_file(reference), cfg.sample_rate, f"reference '{reference}'")
            mel = SpeechMel(cfg)(wave)[: cfg.max_reference_frames]
            return SpeechCondition(torch.tensor([self.speakers.index(name)]), mel[None],
                                   torch.tensor([mel.shape[0]]))
        return SpeechCondition(torch.tensor([self.speakers.index(name)]), torch.zeros(1, 1, cfg.n_mels),
                               torch.zeros(1, dtype=torch.long))

    def noise(self) -> Tensor:
        """The DiT's starting noise for the longest reply, from ``generate.seed``: streaming
        and whole decoding start from the same point."""
        s, m = self.settings, self.model
        g = torch.Generator().manual_seed(s.seed)
        return torch.randn(1, s.max_codec_tokens * m.dit.mel_frames_per_code, m.speech_cfg.n_mels,
                           generator=g)

    def talker_sampling(self) -> dict:
        s = self.settings
        return {"temperature": s.talker_temperature, "top_k": s.talker_top_k, "top_p": s.talker_top_p,
                "repetition": s.repetition_penalty, "min_tokens": s.min_codec_tokens}

    # ---- Thinker -------------------------------------------------------------------
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

    def context(self, example: Example, hidden: Tensor, embeds: Tensor, reply: list[int],
                cond: SpeechCondition) -> TalkerContext:
        """The Talker's view: prompt vectors (media placeholders' embeddings zeroed) and the
        vectors of the reply positions ``reply``."""
        m, P = self.model, len(example)
        flat = embeds[0, :P].masked_fill(m.media_mask(example.input_ids)[:, None], 0.0)
        prompt = (hidden[0, :P] + flat)[None]
        rows = (hidden[0, reply] + embeds[0, reply])[None]
        return TalkerContext(rows, torch.ones(rows.shape[:2], dtype=torch.bool), prompt,
                             torch.ones(1, P, dtype=torch.bool),
                             m.position.position_ids(example.layout)[:, None], cond.speaker)

    # ---- whole reply -----------------------------------------------------------------
    @torch.no_grad()
    def speak(self, ctx: TalkerContext, cond: SpeechCondition) -> tuple[Tensor, Tensor, Tensor]:
        """Codes, waveform and mel of one reply."""
        s, m = self.settings, self.model
        codes = m.talker.generate(ctx, s.max_codec_tokens, **self.talker_sampling())[0]
        codes = codes[codes < m.codec.vocab_size]  # drop eos/pad
        if codes.numel() == 0:
            return codes, torch.zeros(0), torch.zeros(0, m.speech_cfg.n_mels)
        mel = sample_mel(m.dit, codes[None], torch.ones_like(codes[None], dtype=torch.bool),
                         m.speech_cfg.n_mels, s.ode_steps, s.ode_method, s.guidance, cond=cond,
                         sway=s.ode_sway, noise=self.noise())
        return codes, m.vocoder(mel)[0], mel[0]

    def __call__(self, conversation: dict, speaker: str | None = None,
                 reference: str | None = None) -> Reply:
        cond = self.condition(speaker, reference)
        example = self.prompt(conversation)
        new, hidden, embeds, start = self.reply_text(example)
        ctx = self.context(example, hidden, embeds, list(range(start, start + len(new))), cond)
        codes, wave, mel = self.speak(ctx, cond)
        text = self.model.tokenizer.decode([t for t in new if t != self.eos])
        return Reply(text, new, codes, wave, self.model.speech_cfg.sample_rate, mel)

    # ---- streaming ---------------------------------------------------------------------
    @torch.no_grad()
    def stream(self, conversation: dict, speaker: str | None = None,
               reference: str | None = None) -> Iterator[TextPiece | AudioPiece | Reply]:
        """Text pieces and audio chunks as they are ready, then the whole ``Reply``."""
        s, m = self.settings, self.model
        cond = self.condition(speaker, reference)
        example = self.prompt(conversation)
        prompt_embeds = m.embed_inputs(collate([example], self.pad))
        layout = list(example.layout)
        hidden, embeds = self._forward(prompt_embeds, [], layout)
        ctx = self.context(example, hidden, embeds, [], cond)
        new: list[int] = []
        pending: list[TextPiece] = []
        shown = [""]  # text already yielded

        def show(final: bool = False) -> None:
            """Queue the text not yet shown. A token may end inside a multi-byte character
            (byte tokens, BPE pieces): text ending in U+FFFD waits for the next token."""
            text = m.tokenizer.decode([t for t in new if t != self.eos])
            if (final or not text.endswith("\ufffd")) and len(text) > len(shown[0]):
                pending.append(TextPiece(text[len(shown[0]):]))
                shown[0] = text

        def next_token(hidden: Tensor) -> None:
            tok = int(sample_next(m.thinker.logits(hidden[:, -1]), s.temperature, s.top_k, s.top_p)[0])
            new.append(tok)
            show(final=tok == self.eos)

        def reply_rows() -> Iterator[Tensor]:
            """Vector of each reply token, computed when it is fed back to the Thinker."""
            next_token(hidden)
            while True:
                h, e = self._forward(prompt_embeds, new, layout)
                row = h[0, -1] + e[0, -1]
                if new[-1] == self.eos or len(new) >= s.max_new_tokens:
                    yield row
                    return
                next_token(h)
                yield row

        rows = reply_rows()
        speech = SpeechStream(m, s, cond, self.noise())
        codes: list[int] = []
        for code in m.talker.stream(ctx, rows, s.max_codec_tokens, **self.talker_sampling()):
            yield from pending
            pending.clear()
            if code >= m.codec.vocab_size:
                continue
            codes.append(code)
            yield from speech.push(code)
        for _ in rows:  # the Talker may stop before the Thinker does: finish the text
            yield from pending
            pending.clear()
        show(final=True)
        yield from pending
        pieces = list(speech.finish())
        yield from pieces
        text = m.tokenizer.decode([t for t in new if t != self.eos])
        wave = torch.zeros(0)  # the caller has the chunks; the summary carries codes and mel
        yield Reply(text, new, torch.tensor(codes, dtype=torch.long), wave, m.speech_cfg.sample_rate,
                    speech.mel_frames)
