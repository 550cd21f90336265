"""Generate a reply (text, then speech) from an exported bundle, whole or streaming.

The prompt goes through the same ``SampleBuilder`` as training data, so tokens,
layout and position ids match what the model was trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from omnitrain.bundle import load_bundle
from omnitrain.config.schema import GenerateConfig
from omnitrain.data.sample_builder import Example, SampleBuilder
from omnitrain.hf.bundle_files import REFERENCE_MELS
from omnitrain.inference.prompts import user_turn, with_system
from omnitrain.inference.replier import GenerateError, Replier, Reply
from omnitrain.inference.streaming import AudioPiece, SpeechStream, TextPiece
from omnitrain.inference.thinker_decode import ThinkerDecoder
from omnitrain.slots import SpeechCondition

__all__ = ["GenerateError", "Generator", "Reply", "user_turn", "with_system"]


def reference_mels(bundle: Path, init_from: str | None) -> dict[str, Tensor]:
    """Each voice's own reference utterance (mel frames), e.g. Qwen2.5-Omni's spk_dict.pt
    ref_mel written by import-hf: the DiT hears it when no --reference is given. A
    fine-tuned bundle has none of its own: its run's starting bundle's."""
    refs = Path(bundle) / REFERENCE_MELS
    if not refs.is_file() and init_from:
        refs = Path(str(init_from)) / REFERENCE_MELS
    return load_file(str(refs)) if refs.is_file() else {}


class Generator:
    """A bundle loaded for generation (on ``device``, in ``dtype``), replying through the
    one ``Replier``; ``batch_size`` prompts decode together in ``replies``."""

    def __init__(self, bundle: Path, settings: GenerateConfig | None = None, trust_plugins: bool = False,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                 batch_size: int = 1) -> None:
        self.model, self.cfg = load_bundle(bundle, trust_plugins=trust_plugins, device=device, dtype=dtype)
        self.replier = Replier(self.model, settings or self.cfg.generate, SampleBuilder.from_config(self.cfg),
                               reference_mels(Path(bundle), self.cfg.init_from), batch_size)
        self.builder, self.eos, self.pad = self.replier.builder, self.replier.eos, self.replier.pad
        self.speakers = self.replier.speakers

    @property
    def settings(self) -> GenerateConfig:
        return self.replier.settings

    @settings.setter
    def settings(self, value: GenerateConfig) -> None:
        self.replier.settings = value

    def prompt(self, conversation: dict) -> Example:
        """The conversation's tokens up to the reply (``generate.system`` put first where it has none)."""
        return self.replier.prompt(conversation)

    def condition(self, speaker: str | None = None, reference: str | None = None) -> SpeechCondition:
        return self.replier.condition(speaker, reference)

    def reply_text(self, example: Example, max_new_tokens: int | None = None) -> ThinkerDecoder:
        """The prompt's decoder, fed its reply text until eos."""
        return self.replier.reply_texts([example], max_new_tokens)[0]

    def __call__(self, conversation: dict, speaker: str | None = None,
                 reference: str | None = None) -> Reply:
        return self.replies([conversation], [speaker], [reference])[0]

    def replies(self, conversations: list[dict], speakers: list[str | None] | None = None,
                references: list[str | None] | None = None) -> list[Reply]:
        """One reply per conversation, ``batch_size`` decoding together."""
        n = len(conversations)
        conds = [self.condition(s, r) for s, r in zip(speakers or [None] * n, references or [None] * n, strict=True)]
        return self.replier.replies([self.prompt(c) for c in conversations], conds)

    # ---- streaming ---------------------------------------------------------------------
    @torch.no_grad()
    def stream(self, conversation: dict, speaker: str | None = None,
               reference: str | None = None) -> Iterator[TextPiece | AudioPiece | Reply]:
        """Text pieces and audio chunks as they are ready, then the whole ``Reply``."""
        s, m, r = self.settings, self.model, self.replier
        cond = self.condition(speaker, reference)
        dec = r.decoder(self.prompt(conversation))
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
                token = r.next_token(dec)
                row = dec.feed(token)
                show(final=token == self.eos)
                yield row
                if token == self.eos or len(new) >= s.max_new_tokens:
                    return

        rows = reply_rows()
        speech = SpeechStream(m, s, cond, r.noise())
        codes: list[int] = []
        for code in m.talker.stream(ctx, rows, s.max_codec_tokens, **r.talker_sampling()):
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
