"""Held-out speech quality of a bundle on the demo's held-out prompts ((kind, digits)
combinations never seen in training): the Talker's codec tokens vs the tokens of the
correct spoken reply, and the codec's tokens of the generated waveform (DiT + vocoder)
vs the same, position by position. Chance is 1 / codec vocabulary.

    .venv/bin/python benchmarks/speech_heldout.py runs/speech_stage2/bundle data/demo/heldout/manifest.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from omnitrain.data.build.demo import reply_speech
from omnitrain.inference.generate import Generator, user_turn


def agreement(got: torch.Tensor, want: torch.Tensor) -> tuple[int, int]:
    """Equal positions over the longer length (missing or extra tokens count as wrong)."""
    n = min(len(got), len(want))
    return int((got[:n] == want[:n]).sum()), max(len(got), len(want))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("manifest")
    args = p.parse_args()
    gen = Generator(Path(args.bundle))
    codec = gen.model.codec
    manifest = Path(args.manifest)
    totals = {"text": [0, 0], "talker codes": [0, 0], "codes of the waveform": [0, 0]}
    for line in manifest.read_text().splitlines():
        row = json.loads(line)
        media = (str(manifest.parent / row[k]) if row.get(k) else None for k in ("audio", "image", "video"))
        reply = gen(user_turn(row["text"], *media))
        digits = [int(d) for d in row["expected"].split()]
        want = codec.encode(torch.from_numpy(reply_speech(digits, codec)))
        heard = codec.encode(reply.wave)
        for name, (ok, n) in {"text": (int(reply.text.strip() == row["expected"]), 1),
                              "talker codes": agreement(reply.codec_tokens, want),
                              "codes of the waveform": agreement(heard, want)}.items():
            totals[name][0] += ok
            totals[name][1] += n
        print(f"{row['id']} [{row['kind']}] {reply.text!r}: talker {reply.codec_tokens.tolist()}\n"
              f"{'':>20} wanted {want.tolist()}\n{'':>20} heard  {heard.tolist()}")
    print(f"\nchance per token: 1/{codec.vocab_size} = {1 / codec.vocab_size:.3f}")
    for name, (ok, n) in totals.items():
        print(f"{name:<22} {ok}/{n} = {ok / n:.3f}")


if __name__ == "__main__":
    main()
