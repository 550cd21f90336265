"""The model's own replies to a few validation prompts, during training.

The first ``logger.samples`` conversations of the validation shards, cut before their
last assistant turn, are the prompts; the in-memory model answers each through the
inference path ``omnitrain generate`` uses (``Generator``'s steps: the Thinker decodes
the text with its cache, the Talker the codes, the DiT the mel, the vocoder the wave),
with the run's ``generate`` settings. The expected reply is the cut turn's text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from omnitrain.config.typed import RunConfig
from omnitrain.data.collate import collate
from omnitrain.data.examples import _Members
from omnitrain.data.sample_builder import Example, SampleBuilder
from omnitrain.data.shards import resolve_shards
from omnitrain.inference.sampling import sample_next
from omnitrain.inference.thinker_decode import ThinkerDecoder
from omnitrain.model.omni_model import OmniModel
from omnitrain.model.speech_path import spoken_codes
from omnitrain.parallel import Strategy
from omnitrain.slots import SpeechCondition


@dataclass
class Prompt:
    key: str
    text: str  # the prompt's turns as text, media named: the table's first column
    expected: str  # the validation sample's own reply
    example: Example


def _describe(turns: list[dict]) -> str:
    lines = []
    for turn in turns:
        parts = []
        for part in turn.get("content", []):
            if "text" in part:
                parts.append(str(part["text"]))
            else:
                kind = next((k for k in ("audio", "image", "video") if k in part), "media")
                parts.append(f"[{kind}: {part.get(kind, '?')}]")
        lines.append(f"{turn.get('role', '?')}: {' '.join(parts)}")
    return "\n".join(lines)


def split_conversation(conversation: dict) -> tuple[dict, str]:
    """(the conversation up to its last assistant turn, that turn's text)."""
    turns = list(conversation.get("turns") or [])
    last = max((i for i, t in enumerate(turns) if t.get("role") == "assistant"), default=len(turns))
    expected = " ".join(str(p["text"]) for p in (turns[last].get("content", []) if last < len(turns) else [])
                        if "text" in p)
    return {**conversation, "turns": turns[:last]}, expected


def validation_prompts(cfg: RunConfig, n: int) -> list[Prompt]:
    """The first ``n`` usable prompts of ``data.val_shards`` (none without them)."""
    if n <= 0 or not cfg.data.val_shards:
        return []
    import webdataset as wds

    builder = SampleBuilder.from_config(cfg)
    out: list[Prompt] = []
    urls = resolve_shards(cfg.data.val_shards, "data.val_shards")
    for tried, sample in enumerate(wds.tarfile_to_samples()({"url": u} for u in urls)):
        if tried >= 20 * n:  # not conversations (another task's data): give up early
            break
        key = str(sample.get("__key__", "?"))
        try:
            prompt, expected = split_conversation(json.loads(sample["json"]))
            if not prompt["turns"]:
                continue
            example = builder.build(prompt, _Members(sample, key), key, for_generation=True)
        except Exception:  # noqa: BLE001 - a sample the data pipeline would skip is skipped here too
            continue
        out.append(Prompt(key, _describe(prompt["turns"]), expected, example))
        if len(out) >= n:
            break
    return out


@dataclass
class Reply:
    text: str
    codec_tokens: torch.Tensor  # (n,), or (n, Q) frames
    wave: torch.Tensor  # (samples,) float, CPU
    mel: torch.Tensor  # (frames, n_mels) the DiT's output, CPU
    speech_error: str = ""  # why there is no audio, when the speech path failed


class ModelReplier:
    """The steps of ``omnitrain.inference.generate.Generator.__call__`` (Thinker decode
    with its cache, Talker codes, DiT mel from the same seeded noise, vocoder), on a model
    in memory and on its device, with speaker 0 and no reference voice. (Generator itself
    loads an exported bundle, a layer above training.)"""

    def __init__(self, model: OmniModel, cfg: RunConfig) -> None:
        self.model, self.settings = model, cfg.generate
        self.builder = SampleBuilder.from_config(cfg)
        self.eos, self.pad = self.builder.special["eos"], self.builder.special["pad"]
        self.device = next(model.parameters()).device

    def condition(self) -> SpeechCondition:
        n_mels = self.model.speech_cfg.n_mels
        return SpeechCondition(torch.zeros(1, dtype=torch.long), torch.zeros(1, 1, n_mels),
                               torch.zeros(1, dtype=torch.long)).to(self.device)

    def noise(self) -> torch.Tensor:
        s, m = self.settings, self.model
        g = torch.Generator().manual_seed(s.seed)
        return torch.randn(1, s.max_codec_tokens * m.dit.mel_frames_per_code, m.speech_cfg.n_mels,
                           generator=g).to(self.device)

    @torch.no_grad()
    def reply(self, prompt: Prompt) -> Reply:
        s, m = self.settings, self.model
        dec = ThinkerDecoder(m, move_data_to_device(collate([prompt.example], self.pad), self.device),
                             prompt.example.layout)
        for _ in range(s.max_new_tokens):
            token = int(sample_next(m.thinker.logits(dec.last), s.temperature, s.top_k, s.top_p)[0])
            dec.feed(token)
            if token == self.eos:
                break
        text = m.tokenizer.decode([t for t in dec.new if t != self.eos])
        try:
            return self._speak(dec, text)
        except RuntimeError as exc:  # the Talker or the DiT: the text still counts
            empty = torch.zeros(0, m.speech_cfg.n_mels)
            return Reply(text, torch.zeros(0, dtype=torch.long), torch.zeros(0), empty, f"{type(exc).__name__}: {exc}")

    def _speak(self, dec: ThinkerDecoder, text: str) -> Reply:
        s, m = self.settings, self.model
        cond = self.condition()
        codes = m.talker.generate(dec.talker_context(cond), s.max_codec_tokens, temperature=s.talker_temperature,
                                  top_k=s.talker_top_k, top_p=s.talker_top_p, repetition=s.repetition_penalty,
                                  min_tokens=s.min_codec_tokens)[0]
        codes = spoken_codes(codes, m.codec.vocab_size)
        if codes.numel() == 0:
            return Reply(text, codes.cpu(), torch.zeros(0), torch.zeros(0, m.speech_cfg.n_mels))
        mask = torch.ones(1, len(codes), dtype=torch.bool, device=codes.device)
        mel = m.mel_of_codes(codes[None], mask, s.ode_steps, s.ode_method, s.guidance, cond=cond,
                             sway=s.ode_sway, noise=self.noise())
        try:
            wave = m.wave_of(codes[None], mask, mel, cond)[0].detach().float().cpu()
        except RuntimeError as exc:  # e.g. Griffin-Lim's STFT on a mel shorter than its padding
            return Reply(text, codes.cpu(), torch.zeros(0), mel[0].detach().float().cpu(),
                         f"the vocoder failed on {mel.shape[1]} mel frames ({codes.numel()} codes): "
                         f"{type(exc).__name__}: {exc}")
        return Reply(text, codes.cpu(), wave, mel[0].detach().float().cpu())


def generation_blocked(strategy: Strategy) -> str | None:
    """Why rank 0 alone cannot run the model outside the training step, or None.

    Under ZeRO-3 and FSDP each rank holds a shard of every weight: a forward gathers
    them from all ranks, so a decode loop on rank 0 alone would wait forever.
    """
    if strategy.shards_parameters:
        return f"strategy={strategy.name} shards the weights over the ranks"
    return None
