"""Generate a reply (text, then speech) from an exported bundle, whole or streaming.

The prompt goes through the same ``SampleBuilder`` as training data, so tokens,
layout and position ids match what the model was trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from omnitrain.bundle import load_bundle
from omnitrain.config.schema import GenerateConfig
from omnitrain.data.collate import collate
from omnitrain.data.media import load_audio
from omnitrain.data.sample_builder import Example, SampleBuilder
from omnitrain.features.speech_mel import SpeechMel
from omnitrain.hf.bundle_files import REFERENCE_MELS
from omnitrain.inference.sampling import sample_next
from omnitrain.inference.streaming import AudioPiece, SpeechStream, TextPiece
from omnitrain.inference.thinker_decode import ThinkerDecoder
from omnitrain.model.speech_path import spoken_codes
from omnitrain.slots import SpeechCondition, TalkerContext


class GenerateError(ValueError):
    """A generation request that cannot be served; the message says what to change."""


@dataclass
class Reply:
    text: str
    token_ids: list[int]
    codec_tokens: Tensor  # (n,), or (n, Q) frames of Q code groups
    wave: Tensor  # (samples,) at ``sample_rate``
    sample_rate: int
    mel: Tensor | None = None  # (frames, n_mels) the DiT's output


def user_turn(text: str, audio: str | None = None, image: str | None = None,
              video: str | None = None, video_audio: bool = True, system: str | None = None) -> dict:
    """A one-turn conversation; media first, then the question (as in the demo data);
    with ``system``, a system turn before it."""
    content: list[dict] = []
    if audio:
        content.append({"audio": audio})
    if image:
        content.append({"image": image})
    if video:
        content.append({"video": video, "use_audio": video_audio})
    content.append({"text": text})
    turns = [{"role": "user", "content": content}]
    if system:
        turns.insert(0, {"role": "system", "content": [{"text": system}]})
    return {"turns": turns}


def with_system(conversation: dict, system: str | None) -> dict:
    """``conversation`` with a first system turn of ``system``, unless it has one already."""
    turns = list(conversation.get("turns") or [])
    if not system or (turns and isinstance(turns[0], dict) and turns[0].get("role") == "system"):
        return conversation
    return {**conversation, "turns": [{"role": "system", "content": [{"text": system}]}, *turns]}


def _read_file(name: str) -> bytes:
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"media file '{name}' does not exist")
    return path.read_bytes()


class Generator:
    def __init__(self, bundle: Path, settings: GenerateConfig | None = None, trust_plugins: bool = False) -> None:
        self.model, self.cfg = load_bundle(bundle, trust_plugins=trust_plugins)
        self.settings = settings or self.cfg.generate
        self.builder = SampleBuilder.from_config(self.cfg)
        self.eos = self.model.tokenizer.stop_id()  # the template's end of an assistant turn
        self.pad = self.builder.special["pad"]
        self.speakers = list(self.model.speech_cfg.speakers)
        # each voice's own reference utterance (mel frames), e.g. Qwen2.5-Omni's spk_dict.pt
        # ref_mel written by import-hf: the DiT hears it when no --reference is given
        refs = Path(bundle) / REFERENCE_MELS
        if not refs.is_file() and self.cfg.init_from:  # a fine-tuned bundle: its run's starting bundle
            refs = Path(str(self.cfg.init_from)) / REFERENCE_MELS
        self.reference_mels = load_file(str(refs)) if refs.is_file() else {}

    def prompt(self, conversation: dict) -> Example:
        """The conversation's tokens up to the reply; ``generate.system`` (``--system``) is put
        first where the conversation has no system turn (else the tokenizer's default is)."""
        conversation = with_system(conversation, self.settings.system)
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
        if name in self.reference_mels:
            mel = self.reference_mels[name][: cfg.max_reference_frames].float()
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
    def decoder(self, example: Example) -> ThinkerDecoder:
        """The Thinker with its prompt prefilled."""
        return ThinkerDecoder(self.model, collate([example], self.pad), example.layout)

    def next_token(self, dec: ThinkerDecoder) -> int:
        s = self.settings
        return int(sample_next(self.model.thinker.logits(dec.last), s.temperature, s.top_k, s.top_p)[0])

    @torch.no_grad()
    def reply_text(self, example: Example, max_new_tokens: int | None = None) -> ThinkerDecoder:
        """Decode until eos (fed back too: the Talker reads the closing eos's vector)."""
        dec = self.decoder(example)
        for _ in range(max_new_tokens or self.settings.max_new_tokens):
            token = self.next_token(dec)
            dec.feed(token)
            if token == self.eos:
                break
        return dec

    # ---- whole reply -----------------------------------------------------------------
    @torch.no_grad()
    def speak(self, ctx: TalkerContext, cond: SpeechCondition) -> tuple[Tensor, Tensor, Tensor]:
        """Codes, waveform and mel of one reply."""
        s, m = self.settings, self.model
        codes = m.talker.generate(ctx, s.max_codec_tokens, **self.talker_sampling())[0]
        codes = spoken_codes(codes, m.codec.vocab_size)
        if codes.numel() == 0:
            return codes, torch.zeros(0), torch.zeros(0, m.speech_cfg.n_mels)
        wave, mel = m.decode_speech(codes[None], torch.ones(1, len(codes), dtype=torch.bool), s.ode_steps,
                                    s.ode_method, s.guidance, cond=cond, sway=s.ode_sway, noise=self.noise())
        return codes, wave[0], mel[0]

    def __call__(self, conversation: dict, speaker: str | None = None,
                 reference: str | None = None) -> Reply:
        cond = self.condition(speaker, reference)
        dec = self.reply_text(self.prompt(conversation))
        codes, wave, mel = self.speak(dec.talker_context(cond), cond)
        text = self.model.tokenizer.decode([t for t in dec.new if t != self.eos])
        return Reply(text, list(dec.new), codes, wave, self.model.speech_cfg.sample_rate, mel)

    # ---- streaming ---------------------------------------------------------------------
    @torch.no_grad()
    def stream(self, conversation: dict, speaker: str | None = None,
               reference: str | None = None) -> Iterator[TextPiece | AudioPiece | Reply]:
        """Text pieces and audio chunks as they are ready, then the whole ``Reply``."""
        s, m = self.settings, self.model
        cond = self.condition(speaker, reference)
        dec = self.decoder(self.prompt(conversation))
        ctx = dec.talker_context(cond)  # the prompt alone: reply vectors come as they are made
        new = dec.new
        pending: list[TextPiece] = []
        shown = [""]  # text already yielded

        def show(final: bool = False) -> None:
            """Queue the text not yet shown. A token may end inside a multi-byte character
            (byte tokens, BPE pieces): text ending in U+FFFD waits for the next token."""
            text = m.tokenizer.decode([t for t in new if t != self.eos])
            if (final or not text.endswith("\ufffd")) and len(text) > len(shown[0]):
                pending.append(TextPiece(text[len(shown[0]):]))
                shown[0] = text

        def reply_rows() -> Iterator[Tensor]:
            """Vector of each reply token, computed when it is fed back to the Thinker."""
            while True:
                token = self.next_token(dec)
                row = dec.feed(token)
                show(final=token == self.eos)
                yield row
                if token == self.eos or len(new) >= s.max_new_tokens:
                    return

        rows = reply_rows()
        speech = SpeechStream(m, s, cond, self.noise())
        codes: list[int] = []
        for code in m.talker.stream(ctx, rows, s.max_codec_tokens, **self.talker_sampling()):
            yield from pending
            pending.clear()
            if (torch.as_tensor(code) >= m.codec.vocab_size).any():  # a special id (in any group)
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
        made = torch.stack(codes) if codes and isinstance(codes[0], Tensor) else torch.tensor(codes, dtype=torch.long)
        yield Reply(text, new, made, wave, m.speech_cfg.sample_rate,
                    speech.mel_frames)
