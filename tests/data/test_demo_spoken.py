"""``omnitrain data demo --profile spoken``: real words (espeak-ng) in the 4 reply voices, each
sample naming its voice; held-out (kind, digits, voice) combinations never trained on, every
kind and voice among them, with their real recordings (``truth.jsonl``) and the voices'
recordings (``voices.jsonl``) in the ``omnitrain eval`` formats."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import soundfile as sf

from omnitrain.data.build.demo_spoken import KINDS, VOICES, WORDS, heldout_items
from omnitrain.evaluation.items import read_audio, read_prompts, read_voices


def samples(folder, split):
    for shard in sorted(folder.glob(f"{split}-*.tar")):
        with tarfile.open(shard) as tar:
            members = {}
            for m in tar.getmembers():
                key, _, name = m.name.partition(".")
                members.setdefault(key, {})[name] = tar.extractfile(m).read()
            yield from members.values()


def test_replies_are_words_in_the_voice_the_sample_names(spoken_demo_dir):
    seen = set()
    for sample in samples(spoken_demo_dir, "train"):
        conv = json.loads(sample["json"])
        reply = conv["turns"][1]
        a, b = conv["meta"]["digits"]
        assert reply["content"][0]["text"] == f"{WORDS[a]} {WORDS[b]}"
        assert reply["speaker"] in VOICES and reply["speaker"] == conv["meta"]["speaker"]
        wave, rate = sf.read(io.BytesIO(sample["reply.wav"]), dtype="float32")
        assert rate == 16000 and 0.5 < len(wave) / rate < 3.0 and np.abs(wave).max() > 0.05
        seen.add((conv["meta"]["kind"], a, b, reply["speaker"]))
    assert {k for k, *_ in seen} == set(KINDS) and {s for *_, s in seen} == set(VOICES)


def test_heldout_combinations_are_new_and_come_with_truth_and_voices(spoken_demo_dir):
    held = spoken_demo_dir / "heldout"
    prompts = read_prompts(held / "manifest.jsonl")
    truth = read_audio(held / "truth.jsonl")
    trained = set()
    for split in ("train", "val"):
        for sample in samples(spoken_demo_dir, split):
            conv = json.loads(sample["json"])
            trained.add((conv["meta"]["kind"], *conv["meta"]["digits"], conv["meta"]["speaker"]))
    rows = [json.loads(line) for line in (held / "manifest.jsonl").read_text().splitlines()]
    assert len(prompts) == len(truth) == 4
    for row, prompt, real in zip(rows, prompts, truth, strict=True):
        a, b = (WORDS.index(w) for w in row["expected"].split())
        assert (row["kind"], a, b, row["speaker"]) not in trained
        assert prompt.speaker == real.speaker == row["speaker"] and real.text == prompt.expected
        assert prompt.reference and real.audio.endswith("_truth.wav")
    voices = read_voices(held / "voices.jsonl")
    assert set(voices) == set(VOICES) and all(len(v) >= 4 for v in voices.values())


def test_the_default_heldout_set_covers_every_kind_and_voice():
    items = heldout_items(0, 48)
    assert len(set(items)) == 48
    assert {(k, s) for k, _, _, s in items} == {(k, s) for k in KINDS for s in VOICES}


@pytest.mark.parametrize("n", [4, 16])
def test_heldout_sets_are_deterministic(n):
    assert heldout_items(0, n) == heldout_items(0, n) != heldout_items(1, n)
