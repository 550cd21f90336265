"""``omnitrain eval``: each bundle replies to every prompt of a manifest (text, and speech
written under the report's folder), then the replies are scored; or ``--audio`` scores
existing recordings. One report holds every bundle side by side."""

from __future__ import annotations

import math
from pathlib import Path

import soundfile as sf
import torch
from tqdm import tqdm

from omnitrain.data.collate import collate
from omnitrain.evaluation.items import AudioItem, PromptItem
from omnitrain.evaluation.report import entry
from omnitrain.evaluation.speech_scores import SpeechScorer, read_wave
from omnitrain.evaluation.voice_id import VoiceIdentifier
from omnitrain.inference.prompts import read_file, user_turn, with_system
from omnitrain.model.omni_model import next_token_targets
from omnitrain.tokens import IGNORE_INDEX


def conversation(item: PromptItem) -> dict:
    m = item.media
    return user_turn(item.text, m.get("audio"), m.get("image"), m.get("video"))


@torch.no_grad()
def expected_nll(gen, prompt: dict, expected: str) -> tuple[float, int]:
    """(summed next-token loss, tokens) of ``expected`` as the reply to ``prompt``, teacher
    forced: its text and the turn's closing token, as training counts them."""
    turns = with_system(prompt, gen.settings.system)["turns"]
    example = gen.builder.build({"turns": [*turns, {"role": "assistant", "content": [{"text": expected}]}]},
                                read_file, key="expected")
    batch = collate([example], gen.pad).to(gen.replier.device)
    thinker, _ = gen.model.thinker_forward(batch)
    n = int((next_token_targets(batch) != IGNORE_INDEX).sum())
    return float(gen.model.text_loss(batch, thinker.hidden)) * n, n


def eval_bundle(gen, items: list[PromptItem], scorer: SpeechScorer, audio_dir: Path, name: str,
                voices: VoiceIdentifier | None = None) -> dict:
    """One bundle's report entry; its spoken replies go to ``audio_dir/<item id>.wav``.
    The Thinker decodes ``gen``'s batch size of prompts together, each reply in the item's
    ``speaker`` (by name) and ``reference``; ``voices`` tells whose voice each reply is."""
    audio_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    step = gen.replier.batch_size
    with tqdm(total=len(items), desc=f"eval {name}", unit="item", leave=False) as bar:
        for start in range(0, len(items), step):
            chunk = items[start:start + step]
            prompts = [conversation(item) for item in chunk]
            replies = gen.replies(prompts, speakers=[item.speaker for item in chunk],
                                  references=[item.reference for item in chunk])
            for item, prompt, reply in zip(chunk, prompts, replies, strict=True):
                row = score_reply(gen, item, prompt, reply, scorer, audio_dir)
                if voices is not None:
                    row.update(voices.score(reply.wave, reply.sample_rate, item.speaker))
                rows.append(row)
            bar.update(len(chunk))
    return entry(rows)


def score_reply(gen, item: PromptItem, prompt: dict, reply, scorer: SpeechScorer, audio_dir: Path) -> dict:
    """An item's report row: the reply, its exact match and teacher-forced loss against
    ``expected``, its audio (written) and the speech scores."""
    row: dict = {"id": item.id, "text": reply.text, "expected": item.expected, "audio": None,
                 "correct": None if item.expected is None else reply.text.strip() == item.expected.strip()}
    if item.expected is not None:
        row["_nll"] = expected_nll(gen, prompt, item.expected)
        row["loss"] = row["_nll"][0] / row["_nll"][1] if row["_nll"][1] else None
        row["ppl"] = math.exp(row["loss"]) if row["loss"] is not None else None
    if reply.wave.numel():
        path = audio_dir / f"{item.id}.wav"
        sf.write(str(path), reply.wave.numpy(), reply.sample_rate, subtype="PCM_16")
        row["audio"] = str(path)
    row.update(scorer.score(reply.wave, reply.sample_rate, reply.text, item.expected, item.reference))
    return row


def eval_audio(items: list[AudioItem], scorer: SpeechScorer, voices: VoiceIdentifier | None = None) -> dict:
    """The ``audio`` report entry: each recording's transcript against its text, and its
    voice against its reference (and, with ``voices``, whose voice it is nearest)."""
    rows = []
    for item in tqdm(items, desc="eval audio", unit="item", leave=False):
        wave, rate = read_wave(item.audio)
        rows.append({"id": item.id, "audio": item.audio, "text": item.text,
                     **scorer.score(wave, rate, item.text, None, item.reference),
                     **(voices.score(wave, rate, item.speaker) if voices is not None else {})})
    return entry(rows)
