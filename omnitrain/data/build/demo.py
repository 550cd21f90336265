"""The demo dataset: two digits, asked about in text, audio, images or video, answered in
text and speech. Small, deterministic, made offline, learnable in minutes on a CPU.

* audio: the digits as DTMF tone pairs (wav / flac);
* image: left half coloured and labelled with the first digit, right half the second
  (png / jpg);
* video (mp4 with an audio track): frames show the first digit, the audio track
  plays the second as DTMF; the model must use both streams;
* text: "Say 3 7.".

The spoken reply is one tone per digit (the demo's "voice"); its codec tokens come
from the configured codec plugin. Held-out samples use (kind, digits) combinations
never seen in training and are written as plain files plus ``heldout/manifest.jsonl``.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from omnitrain.data.build.media_writers import encode_audio, encode_image, encode_mp4
from omnitrain.data.build.shard_writer import ShardWriter, write_index
from omnitrain.slots import Codec

SR = 16000
KINDS = ("text", "audio", "image", "video")
PROMPTS = {
    "text": "Say {a} {b}.",
    "audio": "Which digits do you hear?",
    "image": "Which digits are shown?",
    "video": "Which digit do you see, then hear?",
}
PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [128, 128, 0], [0, 0, 128]],
    dtype=np.uint8,
)
DTMF = {  # digit -> (row Hz, column Hz)
    1: (697, 1209), 2: (697, 1336), 3: (697, 1477), 4: (770, 1209), 5: (770, 1336),
    6: (770, 1477), 7: (852, 1209), 8: (852, 1336), 9: (852, 1477), 0: (941, 1336),
}


@dataclass
class DemoSizes:
    train: int = 1600
    val: int = 64
    heldout: int = 8
    per_shard: int = 200


def dtmf(digits: list[int], rng: random.Random) -> np.ndarray:
    """Each digit 0.2 s of its DTMF pair, 0.1 s gaps, random lead-in and loudness."""
    parts = [np.zeros(int(SR * rng.uniform(0.0, 0.15)))]
    t = np.arange(int(0.2 * SR)) / SR
    for d in digits:
        lo, hi = DTMF[d]
        amp = rng.uniform(0.15, 0.3)
        parts += [amp * (np.sin(2 * np.pi * lo * t) + np.sin(2 * np.pi * hi * t)), np.zeros(int(0.1 * SR))]
    wave = np.concatenate(parts)
    hiss = np.random.default_rng(rng.randrange(2**31)).standard_normal(len(wave))
    return (wave + 0.003 * hiss).astype(np.float32)


def voice_hz(digit: int) -> float:
    """The demo voice's pitch for a digit: 4 semitones apart, from 189 Hz."""
    return 150.0 * 2 ** ((4 + 4 * digit) / 12)


def reply_speech(digits: list[int], codec: Codec) -> np.ndarray:
    """The demo voice: per digit 8 codec frames of a steady tone, 2 frames of silence."""
    hop = int(round(codec.sample_rate / codec.frame_rate))
    t = np.arange(8 * hop) / codec.sample_rate
    parts = []
    for i, d in enumerate(digits):
        hz = voice_hz(d)
        parts.append(0.28 * np.sin(2 * np.pi * hz * t))
        if i < len(digits) - 1:
            parts.append(np.zeros(2 * hop))
    return np.concatenate(parts).astype(np.float32)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def digit_panel(d: int, h: int, w: int, rng: random.Random) -> np.ndarray:
    img = Image.new("RGB", (w, h), tuple(int(c) for c in PALETTE[d]))
    draw = ImageDraw.Draw(img)
    draw.text((w // 2, h // 2), str(d), fill=(255, 255, 255), font=_font(max(10, h // 2)), anchor="mm")
    arr = np.asarray(img).astype(np.int16)
    noise = np.random.default_rng(rng.randrange(2**31)).integers(-12, 13, arr.shape)
    return np.clip(arr + noise, 0, 255).astype(np.uint8)


def image_of(a: int, b: int, rng: random.Random) -> np.ndarray:
    h = rng.choice([56, 64, 72])
    w = 2 * (h // 2)
    return np.concatenate([digit_panel(a, h, w // 2, rng), digit_panel(b, h, w // 2, rng)], axis=1)


def video_of(a: int, b: int, rng: random.Random) -> tuple[bytes, np.ndarray]:
    fps, seconds = 4.0, 2.0
    frames = np.stack([digit_panel(a, 56, 56, rng) for _ in range(int(fps * seconds))])
    track = np.zeros(int(SR * seconds), np.float32)
    tone = dtmf([b], rng)[: len(track)]
    track[: len(tone)] = tone
    return encode_mp4(frames, fps, track, SR), track


def prompt_media(kind: str, a: int, b: int, rng: random.Random, audio) -> tuple[dict[str, bytes], list[dict]]:
    """The user turn's media member and content parts for ``kind`` (its text part not
    included); ``audio(a, b, rng)`` makes an audio prompt's wave (DTMF here, words in the
    spoken demo)."""
    members: dict[str, bytes] = {}
    content: list[dict] = []
    if kind == "audio":
        fmt, ext = rng.choice([("WAV", "wav"), ("FLAC", "flac")])
        members[f"audio_0.{ext}"] = encode_audio(audio(a, b, rng), SR, fmt)
        content.append({"audio": f"audio_0.{ext}"})
    elif kind == "image":
        fmt, ext = rng.choice([("PNG", "png"), ("JPEG", "jpg")])
        members[f"image_0.{ext}"] = encode_image(image_of(a, b, rng), fmt)
        content.append({"image": f"image_0.{ext}"})
    elif kind == "video":
        members["video_0.mp4"], _ = video_of(a, b, rng)
        content.append({"video": "video_0.mp4", "use_audio": True})
    return members, content


def make_sample(kind: str, a: int, b: int, rng: random.Random, codec: Codec, key: str):
    """-> (members dict for a shard, user content parts referencing member names)."""
    members, content = prompt_media(kind, a, b, rng, lambda x, y, r: dtmf([x, y], r))
    content.append({"text": PROMPTS[kind].format(a=a, b=b)})
    members.update(speech_members([a, b], codec, key))
    conversation = {
        "turns": [
            {"role": "user", "content": content},
            {"role": "assistant", "content": [{"text": f"{a} {b}"}],
             "speech": "reply.wav", "codec": "reply.codec.npy", "reference": "reference.wav"},
        ],
        "meta": {"kind": kind, "digits": [a, b]},
    }
    members["json"] = json.dumps(conversation).encode()
    return {"__key__": key, **members}


def speech_members(digits: list[int], codec: Codec, key: str) -> dict[str, bytes]:
    """The spoken reply's members: reply.wav, its codec tokens, and reference.wav."""
    speech = reply_speech(digits, codec)
    # the voice's reference utterance (the DiT's speaker conditioning): another digit
    ref_digit = random.Random(f"{key}/reference").randrange(10)
    buf = io.BytesIO()
    np.save(buf, codec.encode(speech).numpy().astype(np.int32))
    return {
        "reply.wav": encode_audio(speech, codec.sample_rate),
        "reference.wav": encode_audio(reply_speech([ref_digit], codec), codec.sample_rate),
        "reply.codec.npy": buf.getvalue(),
    }


def heldout_pairs(seed: int, n: int) -> list[tuple[str, int, int]]:
    rng = random.Random(seed + 7)
    combos = [(k, a, b) for k in KINDS for a in range(10) for b in range(10)]
    rng.shuffle(combos)
    # one per kind first, so every modality is checked
    picked = [next(c for c in combos if c[0] == k) for k in KINDS]
    picked += [c for c in combos if c not in picked][: max(0, n - len(picked))]
    return picked[:n]


def write_splits(out: Path, sizes, rng: random.Random, draw, held_out: set, make, progress=None,
                 measure=None) -> list[dict]:
    """train-*.tar and val-*.tar of ``sizes.train`` / ``sizes.val`` samples, ``sizes.per_shard``
    a shard: each sample ``make(combo, rng, key)`` of a ``draw(rng)`` not in ``held_out``."""
    shards: list[dict] = []
    for split, count in (("train", sizes.train), ("val", sizes.val)):
        writer, done, index = None, 0, 0
        while done < count:
            combo = draw(rng)
            if combo in held_out:
                continue
            if writer is None:
                writer = ShardWriter(out / f"{split}-{index:06d}.tar", measure)
                index += 1
            writer.write(make(combo, rng, f"{split}{done:06d}"))
            done += 1
            if progress:
                progress(1)
            if writer.samples == sizes.per_shard or done == count:
                shards.append(writer.close())
                writer = None
    return shards


def make_demo(out_dir: Path, codec: Codec, sizes: DemoSizes | None = None, seed: int = 0,
              progress=None, kinds: tuple[str, ...] = KINDS, measure=None) -> dict:
    """Write train/val shards, held-out prompts and index.json; ``kinds`` limits the modalities."""
    sizes = sizes or DemoSizes()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    held = heldout_pairs(seed, sizes.heldout)
    held_set = set(held)
    rng = random.Random(seed)

    def draw(r: random.Random):
        return r.choice(kinds), r.randrange(10), r.randrange(10)

    shards = write_splits(out, sizes, rng, draw, held_set, lambda c, r, key: make_sample(*c, r, codec, key),
                          progress, measure)
    _write_heldout(out / "heldout", held, rng, codec)
    write_index(out, shards, {"kinds": list(kinds), "heldout": len(held), "seed": seed})
    return {"shards": shards, "heldout": out / "heldout" / "manifest.jsonl"}


def _write_heldout(directory: Path, held, rng: random.Random, codec: Codec) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (kind, a, b) in enumerate(held):
        sample = make_sample(kind, a, b, rng, codec, f"heldout{i:03d}")
        conv = json.loads(sample["json"])
        entry = {"id": f"heldout{i:03d}", "kind": kind, "expected": f"{a} {b}"}
        for part in conv["turns"][0]["content"]:
            if "text" in part:
                entry["text"] = part["text"]
            for media in ("audio", "image", "video"):
                if media in part:
                    name = f"heldout{i:03d}_{part[media]}"
                    (directory / name).write_bytes(sample[part[media]])
                    entry[media] = name
        lines.append(json.dumps(entry))
    (directory / "manifest.jsonl").write_text("\n".join(lines) + "\n")
