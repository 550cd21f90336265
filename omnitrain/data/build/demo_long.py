"""The demo dataset's ``long`` profile: the demo's digits task at the lengths real omni
data has, so benchmarks time realistic steps (`omnitrain data demo OUT --profile long`).

* audio: 10-30 s of DTMF digits in groups, separated by stretches of low noise
  (wav / flac); the reply reads every digit;
* image: 448x448, a 4x4 or 7x7 grid of digit panels (png / jpg), read row by row;
* video: 10 s, 448x252 frames at 4 fps (sampled at the encoders' 2 fps by the loader),
  one digit on screen per second, and an audio track of DTMF digits over the same 10 s;
  the reply says what it sees, then what it hears;
* text: a list of digits to say in words.

Replies spell the digits as words: 100-400 tokens of the byte tokenizer (the default;
one token per byte), with the demo voice's speech of those digits (0.4 s each, so 8-32
s, 200-800 codec frames at 25 Hz), its codec tokens and a reference utterance, laid out
as the short profile's samples (``demo.make_sample``), so the normal pipeline reads
them. No held-out prompts: this profile is a benchmark workload, not an evaluation set
(the short profile's held-out set covers generation).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnitrain.data.build.demo import KINDS, SR, digit_panel, dtmf, speech_members
from omnitrain.data.build.media_writers import encode_audio, encode_image, encode_mp4
from omnitrain.data.build.shard_writer import ShardWriter, write_index
from omnitrain.slots import Codec

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
AUDIO_SECONDS = (10.0, 30.0)
IMAGE_SIZE = 448
GRIDS = (4, 7)  # panels per side: 448 / 4 = 112 px, 448 / 7 = 64 px
VIDEO_SECONDS, VIDEO_FPS, VIDEO_HW = 10, 4.0, (252, 448)
DIGIT_SECONDS = 0.3  # a DTMF digit: 0.2 s tone + 0.1 s gap (demo.dtmf)
REPLY_BYTES = (100, 400)  # the reply text's length in UTF-8 bytes (= byte-tokenizer tokens)
PROMPTS = {
    "text": "Say these digits in words: {digits}",
    "audio": "Which digits do you hear?",
    "image": "Read the digits in the grid, row by row.",
    "video": "Which digits do you see, and which do you hear?",
}


@dataclass
class LongSizes:
    """Smaller counts than the short profile: a long sample is ~100x the bytes."""

    train: int = 64
    val: int = 8
    per_shard: int = 16


def words(digits: list[int]) -> str:
    return " ".join(WORDS[d] for d in digits)


def digits_for(head: str, rng: random.Random, most: int | None = None) -> list[int]:
    """Random digits whose reply ``head + words(digits)`` is 100-400 bytes long, at a
    length drawn uniformly in that range (``most`` caps the digit count)."""
    target = rng.randint(REPLY_BYTES[0], REPLY_BYTES[1] - 6)  # one more word is at most 6 bytes
    digits: list[int] = []
    while len((head + words(digits)).encode()) < target and (most is None or len(digits) < most):
        digits.append(rng.randrange(10))
    return digits


def spaced_dtmf(digits: list[int], seconds: float, rng: random.Random) -> np.ndarray:
    """``digits`` as DTMF in groups of 3-6, with the rest of ``seconds`` spread as noisy
    pauses before, between and after the groups: exactly ``seconds`` long."""
    groups, i = [], 0
    while i < len(digits):
        n = rng.randint(3, 6)
        groups.append(dtmf(digits[i:i + n], rng))
        i += n
    total = int(round(seconds * SR))
    spare = total - sum(len(g) for g in groups)
    if spare < 0:
        raise ValueError(f"{len(digits)} DTMF digits do not fit in {seconds:.1f} s")
    cuts = np.sort(np.random.default_rng(rng.randrange(2**31)).integers(0, spare + 1, len(groups)))
    pauses = np.diff(np.concatenate([[0], cuts, [spare]]))
    noise = np.random.default_rng(rng.randrange(2**31))
    parts = []
    for pause, group in zip(pauses[:-1], groups):
        parts += [0.004 * noise.standard_normal(pause), group]
    parts.append(0.004 * noise.standard_normal(pauses[-1]))
    return np.concatenate(parts).astype(np.float32)


def long_audio(rng: random.Random) -> tuple[dict, list[int], str]:
    seconds = rng.uniform(*AUDIO_SECONDS)
    head = "I hear these digits: "
    fit = int((seconds - 1.0) / (DIGIT_SECONDS + 0.15 / 3))  # a lead-in of up to 0.15 s per group of >= 3
    digits = digits_for(head, rng, most=fit)
    fmt, ext = rng.choice([("WAV", "wav"), ("FLAC", "flac")])
    members = {f"audio_0.{ext}": encode_audio(spaced_dtmf(digits, seconds, rng), SR, fmt)}
    return members, digits, head + words(digits)


def long_image(rng: random.Random) -> tuple[dict, list[int], str]:
    g = rng.choice(GRIDS)
    cell = IMAGE_SIZE // g
    digits = [rng.randrange(10) for _ in range(g * g)]
    rows = [np.concatenate([digit_panel(d, cell, cell, rng) for d in digits[r * g:(r + 1) * g]], axis=1)
            for r in range(g)]
    grid = np.concatenate(rows, axis=0)
    fmt, ext = rng.choice([("PNG", "png"), ("JPEG", "jpg")])
    reply = f"A {g} by {g} grid. " + " ".join(
        f"Row {r + 1}: {words(digits[r * g:(r + 1) * g])}." for r in range(g))
    return {f"image_0.{ext}": encode_image(grid, fmt)}, digits, reply


def long_video(rng: random.Random) -> tuple[dict, list[int], str]:
    """One digit on screen per second; the track plays other digits over the 10 s."""
    seen = [rng.randrange(10) for _ in range(VIDEO_SECONDS)]
    h, w = VIDEO_HW
    per_second = int(VIDEO_FPS)
    frames = np.stack([digit_panel(d, h, w, rng) for d in seen for _ in range(per_second)])
    head = f"I see {words(seen)}. I hear "
    fit = int((VIDEO_SECONDS - 1.0) / (DIGIT_SECONDS + 0.15 / 3))
    heard = digits_for(head, rng, most=fit)
    track = spaced_dtmf(heard, VIDEO_SECONDS, rng)
    return {"video_0.mp4": encode_mp4(frames, VIDEO_FPS, track, SR)}, seen + heard, head + words(heard) + "."


def long_text(rng: random.Random) -> tuple[dict, list[int], str]:
    head = "Here they are: "
    digits = digits_for(head, rng)
    return {}, digits, head + words(digits)


MAKERS = {"text": long_text, "audio": long_audio, "image": long_image, "video": long_video}


def make_long_sample(kind: str, rng: random.Random, codec: Codec, key: str) -> dict:
    """One long sample's shard members (as ``demo.make_sample``: media, reply.wav,
    reply.codec.npy, reference.wav and the conversation ``json``)."""
    members, digits, reply = MAKERS[kind](rng)
    content = [{name.split("_")[0]: name} for name in members]  # "image_0.png" -> {"image": ...}
    if kind == "video":
        content[0]["use_audio"] = True
    prompt = PROMPTS[kind].format(digits=" ".join(map(str, digits)))
    content.append({"text": prompt})
    n = len(reply.encode())
    if not REPLY_BYTES[0] <= n <= REPLY_BYTES[1]:  # a bug in the makers above, not bad luck
        raise AssertionError(f"{kind} reply of {n} bytes is outside {REPLY_BYTES}")
    members.update(speech_members(digits, codec, key))
    conversation = {
        "turns": [
            {"role": "user", "content": content},
            {"role": "assistant", "content": [{"text": reply}],
             "speech": "reply.wav", "codec": "reply.codec.npy", "reference": "reference.wav"},
        ],
        "meta": {"kind": kind, "digits": digits, "profile": "long"},
    }
    members["json"] = json.dumps(conversation).encode()
    return {"__key__": key, **members}


def make_long_demo(out_dir: Path, codec: Codec, sizes: LongSizes | None = None, seed: int = 0,
                   progress=None, kinds: tuple[str, ...] = KINDS, measure=None) -> dict:
    """Write train/val shards and index.json; kinds cycle in a seeded random order, so
    every kind appears in any ``len(kinds)`` consecutive samples. Deterministic per seed."""
    sizes = sizes or LongSizes()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"long/{seed}")
    shards: list[dict] = []
    for split, count in (("train", sizes.train), ("val", sizes.val)):
        writer, order = None, []
        for done in range(count):
            if not order:
                order = rng.sample(list(kinds), len(kinds))
            if writer is None:
                writer = ShardWriter(out / f"{split}-{sum(s['name'].startswith(split) for s in shards):06d}.tar", measure)
            writer.write(make_long_sample(order.pop(), rng, codec, f"{split}{done:06d}"))
            if progress:
                progress(1)
            if writer.samples == sizes.per_shard or done == count - 1:
                shards.append(writer.close())
                writer = None
    write_index(out, shards, {"kinds": list(kinds), "heldout": 0, "seed": seed, "profile": "long"})
    return {"shards": shards, "heldout": None}
