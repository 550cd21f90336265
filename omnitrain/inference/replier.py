"""The one replier: a model and prompts in, replies (text, then speech) out.

``omnitrain generate`` (through ``Generator``, which loads a bundle), ``omnitrain eval``
and validation during training (on the model in memory) all reply through it, so the
three cannot drift apart. The Thinker decodes up to ``batch_size`` prompts together
(``omnitrain.inference.batched_decode``) where it can (``Thinker.batched_step``), one at
a time otherwise; greedy replies are the same either way. The Talker, the DiT and the
vocoder then speak each reply. It imports nothing of Lightning or of training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from omnitrain.config.typed import GenerateConfig
from omnitrain.data.collate import collate
from omnitrain.data.media import load_audio
from omnitrain.data.sample_builder import Example, SampleBuilder
from omnitrain.features.speech_mel import SpeechMel
from omnitrain.inference.batched_decode import decode_together
from omnitrain.inference.prompts import read_file, with_system
from omnitrain.inference.sampling import sample_next
from omnitrain.inference.thinker_decode import ThinkerDecoder
from omnitrain.model.omni_model import OmniModel
from omnitrain.model.speech_path import spoken_codes
from omnitrain.slots import SpeechCondition


class GenerateError(ValueError):
    """A generation request that cannot be served; the message says what to change."""


@dataclass
class Reply:
    text: str
    token_ids: list[int]
    codec_tokens: Tensor  # (n,), or (n, Q) frames of Q code groups; CPU
    wave: Tensor  # (samples,) float at ``sample_rate``; CPU
    sample_rate: int
    mel: Tensor | None = None  # (frames, n_mels) the DiT's output; CPU
    speech_error: str = ""  # why there is no audio, when the speech path failed and errors were kept


class Replier:
    def __init__(self, model: OmniModel, settings: GenerateConfig, builder: SampleBuilder,
                 reference_mels: dict[str, Tensor] | None = None, batch_size: int = 1,
                 keep_speech_errors: bool = False) -> None:
        """``reference_mels``: each voice's own reference utterance (a bundle's, from
        import-hf). ``keep_speech_errors``: a failure of the speech path leaves the reply's
        text and says why in ``Reply.speech_error`` (validation) instead of raising."""
        if batch_size < 1:
            raise GenerateError(f"batch size must be at least 1, got {batch_size}")
        self.model, self.settings, self.builder = model, settings, builder
        self.reference_mels = reference_mels or {}
        self.batch_size, self.keep_speech_errors = batch_size, keep_speech_errors
        self.eos = model.tokenizer.stop_id()  # the template's end of an assistant turn
        self.pad = builder.special["pad"]
        self.speakers = list(model.speech_cfg.speakers)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prompt(self, conversation: dict, read: Callable[[str], bytes] = read_file, key: str = "prompt") -> Example:
        """The conversation's tokens up to the reply; ``generate.system`` is put first where
        the conversation has no system turn (else the tokenizer's default is)."""
        conversation = with_system(conversation, self.settings.system)
        return self.builder.build(conversation, read, key=key, for_generation=True)

    # ---- conditioning ------------------------------------------------------------
    def condition(self, speaker: str | None = None, reference: str | None = None) -> SpeechCondition:
        """Who speaks: a name from ``speech.speakers`` and optionally a reference wav."""
        name = speaker or self.settings.speaker or self.speakers[0]
        if name not in self.speakers:
            raise GenerateError(f"unknown speaker {name!r}; this model knows {self.speakers} "
                                "(speech.speakers of its training config)")
        cfg, index = self.model.speech_cfg, torch.tensor([self.speakers.index(name)])
        if reference:
            wave = load_audio(read_file(reference), cfg.sample_rate, f"reference '{reference}'")
            mel = SpeechMel(cfg)(wave)[: cfg.max_reference_frames]
            cond = SpeechCondition(index, mel[None], torch.tensor([mel.shape[0]]))
        elif name in self.reference_mels:
            mel = self.reference_mels[name][: cfg.max_reference_frames].float()
            cond = SpeechCondition(index, mel[None], torch.tensor([mel.shape[0]]))
        else:
            cond = SpeechCondition(index, torch.zeros(1, 1, cfg.n_mels), torch.zeros(1, dtype=torch.long))
        return cond.to(self.device)

    def noise(self) -> Tensor:
        """The DiT's starting noise for the longest reply, from ``generate.seed``: streaming
        and whole decoding, and every reply, start from the same point."""
        s, m = self.settings, self.model
        g = torch.Generator().manual_seed(s.seed)
        return torch.randn(1, s.max_codec_tokens * m.dit.mel_frames_per_code, m.speech_cfg.n_mels,
                           generator=g).to(self.device)

    def talker_sampling(self) -> dict:
        s = self.settings
        return {"temperature": s.talker_temperature, "top_k": s.talker_top_k, "top_p": s.talker_top_p,
                "repetition": s.repetition_penalty, "min_tokens": s.min_codec_tokens}

    # ---- Thinker -------------------------------------------------------------------
    def decoder(self, example: Example) -> ThinkerDecoder:
        """The Thinker with its prompt prefilled."""
        return ThinkerDecoder(self.model, collate([example], self.pad).to(self.device), example.layout)

    def choose(self, logits: Tensor) -> Tensor:
        """(B, V) -> (B,) next tokens, as ``generate``'s settings say."""
        s = self.settings
        return sample_next(logits, s.temperature, s.top_k, s.top_p)

    @torch.no_grad()
    def reply_texts(self, examples: list[Example], max_new_tokens: int | None = None) -> list[ThinkerDecoder]:
        """Each prompt's decoder, fed its reply until eos (fed back too: the Talker reads
        the closing eos's vector); ``batch_size`` prompts at a time."""
        limit = max_new_tokens or self.settings.max_new_tokens
        step = self.batch_size if self.model.thinker.batched_step else 1
        done: list[ThinkerDecoder] = []
        for start in range(0, len(examples), step):
            decoders = [self.decoder(e) for e in examples[start:start + step]]
            if len(decoders) > 1:
                decode_together(decoders, self.choose, self.eos, limit)
            else:
                self._decode_alone(decoders[0], limit)
            done += decoders
        return done

    def next_token(self, dec: ThinkerDecoder) -> int:
        """The token after what ``dec`` was fed (one prompt)."""
        return int(self.choose(self.model.thinker.logits(dec.last))[0])

    def _decode_alone(self, dec: ThinkerDecoder, limit: int) -> None:
        for _ in range(limit):
            token = self.next_token(dec)
            dec.feed(token)
            if token == self.eos:
                break

    def text(self, dec: ThinkerDecoder) -> str:
        return self.model.tokenizer.decode([t for t in dec.new if t != self.eos])

    # ---- speech ----------------------------------------------------------------------
    @torch.no_grad()
    def codes_and_mel(self, dec: ThinkerDecoder, cond: SpeechCondition) -> tuple[Tensor, Tensor]:
        """The Talker's codes (spoken ones only) and the DiT's mel of one reply, on the device."""
        s, m = self.settings, self.model
        codes = m.talker.generate(dec.talker_context(cond), s.max_codec_tokens, **self.talker_sampling())[0]
        codes = spoken_codes(codes, m.codec.vocab_size)
        if codes.numel() == 0:
            return codes, torch.zeros(0, m.speech_cfg.n_mels, device=codes.device)
        mask = torch.ones(1, len(codes), dtype=torch.bool, device=codes.device)
        mel = m.mel_of_codes(codes[None], mask, s.ode_steps, s.ode_method, s.guidance, cond=cond,
                             sway=s.ode_sway, noise=self.noise())
        return codes, mel[0]

    @torch.no_grad()
    def wave(self, codes: Tensor, mel: Tensor, cond: SpeechCondition) -> Tensor:
        """The vocoder's waveform of one reply's codes and mel."""
        if codes.numel() == 0:
            return torch.zeros(0, device=codes.device)
        mask = torch.ones(1, len(codes), dtype=torch.bool, device=codes.device)
        return self.model.wave_of(codes[None], mask, mel[None], cond)[0]

    def _reply(self, dec: ThinkerDecoder, cond: SpeechCondition | None) -> Reply:
        text, rate, n_mels = self.text(dec), self.model.speech_cfg.sample_rate, self.model.speech_cfg.n_mels
        reply = Reply(text, list(dec.new), torch.zeros(0, dtype=torch.long), torch.zeros(0), rate,
                      torch.zeros(0, n_mels))
        if cond is None:  # text only
            return reply
        try:
            codes, mel = self.codes_and_mel(dec, cond)
        except RuntimeError as exc:  # the Talker or the DiT: the text still counts
            if not self.keep_speech_errors:
                raise
            reply.speech_error = f"{type(exc).__name__}: {exc}"
            return reply
        reply.codec_tokens, reply.mel = codes.cpu(), mel.detach().float().cpu()
        try:
            reply.wave = self.wave(codes, mel, cond).detach().float().cpu()
        except RuntimeError as exc:  # e.g. Griffin-Lim's STFT on a mel shorter than its padding
            if not self.keep_speech_errors:
                raise
            reply.speech_error = (f"the vocoder failed on {mel.shape[0]} mel frames ({codes.numel()} codes): "
                                  f"{type(exc).__name__}: {exc}")
        return reply

    def replies(self, examples: list[Example], conds: list[SpeechCondition | None]) -> list[Reply]:
        """One reply per prompt, spoken by its condition (None: text only)."""
        if len(conds) != len(examples):
            raise ValueError(f"{len(examples)} prompts but {len(conds)} speech conditions")
        return [self._reply(dec, cond) for dec, cond in zip(self.reply_texts(examples), conds, strict=True)]
