"""The spoken demo (``omnitrain data demo DIR --profile spoken``): the demo's two-digit task
with real words. Prompts come as text, as speech (the digits said by one of several voices),
as images and as videos (as the tone demo); every reply is the two digits said as English
words by the voice the sample names (its ``speaker``), recorded with espeak-ng
(``omnitrain.data.build.espeak``). Held-out items are (digits, voice, prompt kind)
combinations never seen in training, each with ``expected``, ``speaker`` and ``reference`` (an
utterance of that voice); ``heldout/truth.jsonl`` lists the real recordings of the expected
replies in the ``omnitrain eval --audio`` format, and ``heldout/voices.jsonl`` recordings of
each voice (what ``eval --voices`` compares replies against).
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from omnitrain.data.build.demo import PROMPTS, prompt_media, write_splits
from omnitrain.data.build.media_writers import encode_audio
from omnitrain.data.build.shard_writer import write_index
from omnitrain.slots import Codec

SR = 16000
KINDS = ("text", "audio", "image", "video")
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: the reply voices: speaker name -> espeak-ng voice, chosen so the offline recogniser
#: (pocketsphinx, digits only) hears their two-digit replies (docs/BENCHMARKS.md)
VOICES = {"ava": "en-us+f2", "bea": "en-us+f5", "cal": "en-us+klatt4", "dan": "en-us+edward"}
#: voices that only ask (audio prompts): the Thinker hears more voices than it speaks with
PROMPT_VOICES = (*VOICES.values(), "en-us-nyc+f2", "en-us+klatt3", "en-us+mike2")
#: what each voice says in heldout/voices.jsonl (the voices' recordings ``eval --voices`` averages)
VOICE_SAMPLES = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 0), (2, 7), (6, 1), (8, 3))
PROMPTS = {**PROMPTS, "audio": "Which digits are said?"}
REFERENCE_TEXT = "nine eight seven six five four three two one"


@dataclass
class SpokenSizes:
    train: int = 1600
    val: int = 64
    heldout: int = 48
    per_shard: int = 200


@cache
def said(text: str, voice: str) -> np.ndarray:
    """``text`` in ``voice`` at 16 kHz, 0.1 s of silence each side (espeak is deterministic)."""
    from omnitrain.data.build.espeak import speak

    pad = np.zeros(SR // 10, np.float32)
    return np.concatenate([pad, speak(text, voice, SR).numpy(), pad])


def digits_said(a: int, b: int, voice: str) -> np.ndarray:
    return said(f"{WORDS[a]} {WORDS[b]}", voice)


def spoken_prompt(a: int, b: int, rng: random.Random) -> np.ndarray:
    """The question as speech: a random voice, loudness and hiss."""
    wave = digits_said(a, b, rng.choice(PROMPT_VOICES)) * rng.uniform(0.6, 1.2)
    hiss = np.random.default_rng(rng.randrange(2**31)).standard_normal(len(wave))
    return (wave + 0.002 * hiss).astype(np.float32)


def _npy(codes) -> bytes:
    buf = io.BytesIO()
    np.save(buf, codes.numpy().astype(np.int32))
    return buf.getvalue()


def make_sample(kind: str, a: int, b: int, speaker: str, rng: random.Random, codec: Codec, key: str) -> dict:
    members, content = prompt_media(kind, a, b, rng, spoken_prompt)
    content.append({"text": PROMPTS[kind].format(a=a, b=b)})
    reply = digits_said(a, b, VOICES[speaker])
    members["reply.wav"] = encode_audio(reply, SR)
    members["reference.wav"] = encode_audio(said(REFERENCE_TEXT, VOICES[speaker]), SR)
    members["reply.codec.npy"] = _npy(codec.encode(_resampled(reply, codec.sample_rate)))
    conversation = {
        "turns": [
            {"role": "user", "content": content},
            {"role": "assistant", "content": [{"text": f"{WORDS[a]} {WORDS[b]}"}], "speaker": speaker,
             "speech": "reply.wav", "codec": "reply.codec.npy", "reference": "reference.wav"},
        ],
        "meta": {"kind": kind, "digits": [a, b], "speaker": speaker},
    }
    members["json"] = json.dumps(conversation).encode()
    return {"__key__": key, **members}


def _resampled(wave: np.ndarray, rate: int):
    import torch
    import torchaudio

    t = torch.from_numpy(wave)
    return t if rate == SR else torchaudio.functional.resample(t, SR, rate)


def heldout_items(seed: int, n: int) -> list[tuple[str, int, int, str]]:
    """n (kind, a, b, speaker) combinations, every kind and voice among them."""
    rng = random.Random(seed + 11)
    combos = [(k, a, b, s) for k in KINDS for a in range(10) for b in range(10) for s in VOICES]
    rng.shuffle(combos)
    picked: list[tuple[str, int, int, str]] = []
    for k in KINDS:
        for s in VOICES:
            picked.append(next(c for c in combos if c[0] == k and c[3] == s and c not in picked))
    picked += [c for c in combos if c not in picked][: max(0, n - len(picked))]
    return picked[:n]


def make_spoken_demo(out_dir: Path, codec: Codec, sizes: SpokenSizes | None = None, seed: int = 0,
                     progress=None, measure=None) -> dict:
    """Write train/val shards, the held-out prompts with their truth, and index.json."""
    sizes = sizes or SpokenSizes()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    held = heldout_items(seed, sizes.heldout)
    rng = random.Random(seed)

    def draw(r: random.Random):
        return r.choice(KINDS), r.randrange(10), r.randrange(10), r.choice(list(VOICES))

    shards = write_splits(out, sizes, rng, draw, set(held), lambda c, r, key: make_sample(*c, r, codec, key),
                          progress, measure)
    _write_heldout(out / "heldout", held, rng, codec)
    write_index(out, shards, {"kinds": list(KINDS), "voices": VOICES, "heldout": len(held), "seed": seed,
                              "profile": "spoken"})
    return {"shards": shards, "heldout": out / "heldout" / "manifest.jsonl"}


def _write_heldout(directory: Path, held, rng: random.Random, codec: Codec) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    voices = []
    for speaker, voice in VOICES.items():
        (directory / f"voice_{speaker}.wav").write_bytes(encode_audio(said(REFERENCE_TEXT, voice), SR))
        for a, b in VOICE_SAMPLES:  # replies of its kind: speaker encoders are weak on 1 s alone
            name = f"voice_{speaker}_{a}{b}.wav"
            (directory / name).write_bytes(encode_audio(digits_said(a, b, voice), SR))
            voices.append({"speaker": speaker, "audio": name})
    prompts, truth = [], []
    for i, (kind, a, b, speaker) in enumerate(held):
        name = f"heldout{i:03d}"
        sample = make_sample(kind, a, b, speaker, rng, codec, name)
        conv = json.loads(sample["json"])
        entry = {"id": name, "kind": kind, "expected": f"{WORDS[a]} {WORDS[b]}", "speaker": speaker,
                 "reference": f"voice_{speaker}.wav"}
        for part in conv["turns"][0]["content"]:
            if "text" in part:
                entry["text"] = part["text"]
            for media in ("audio", "image", "video"):
                if media in part:
                    (directory / f"{name}_{part[media]}").write_bytes(sample[part[media]])
                    entry[media] = f"{name}_{part[media]}"
        (directory / f"{name}_truth.wav").write_bytes(sample["reply.wav"])
        prompts.append(entry)
        truth.append({"id": name, "audio": f"{name}_truth.wav", "text": entry["expected"], "speaker": speaker,
                      "reference": f"voice_{speaker}.wav"})
    for file, rows in (("manifest.jsonl", prompts), ("truth.jsonl", truth), ("voices.jsonl", voices)):
        (directory / file).write_text("".join(json.dumps(r) + "\n" for r in rows))
