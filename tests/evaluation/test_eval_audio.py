"""``omnitrain eval --audio`` on real speech: espeak-ng saying strings of four digits in four
voices, scored by the offline recogniser (pocketsphinx, restricted to the digits) and the
offline speaker encoder (resemblyzer's). Correct labels give a low word error rate and
shuffled ones a high one; a reply compared with its own voice scores above the same reply
compared with another voice. Both metrics are shown failing where they should."""

from __future__ import annotations

import json
import random

import pytest

from omnitrain.cli import main
from tests.evaluation.espeak import DIGITS, record

pytest.importorskip("pocketsphinx", reason="needs the eval extra (pocketsphinx)")
pytest.importorskip("espeakng_loader", reason="needs espeakng-loader (test-only)")
# distinct to the speaker encoder (own voice 0.83-0.90, the next voice's 0.63-0.67 on
# utterances of 5 digits) and among the voices pocketsphinx hears best on digits
VOICES = ("en-us+m6", "en-us+f2", "en-us-nyc+m5", "en-gb-x-gbclan+f3")
PER_VOICE = 8


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Each voice's utterances and one reference utterance (another text), as 16 kHz wavs."""
    folder = tmp_path_factory.mktemp("voices")
    rng = random.Random(5)
    items, references = [], {}
    to_record = []
    for v, voice in enumerate(VOICES):
        references[voice] = f"ref{v}.wav"
        to_record.append((folder / references[voice], "nine eight seven six five four three", voice))
        for i in range(PER_VOICE):
            text = " ".join(rng.sample(DIGITS, 4))
            name = f"v{v}_{i}.wav"
            to_record.append((folder / name, text, voice))
            items.append({"id": f"{voice}/{i}", "audio": name, "text": text, "voice": voice})
    record(to_record)  # a fresh espeak-ng, whatever the suite said before
    return folder, items, references


def evaluate(folder, rows, name) -> dict:
    manifest = folder / f"{name}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = folder / f"{name}.json"
    assert main(["eval", "--audio", str(manifest), "--asr", "pocketsphinx", "--closed-vocabulary",
                 "--speaker", "resemblyzer", "--out", str(out)]) == 0
    return json.loads(out.read_text())["bundles"]["audio"]


@pytest.fixture(scope="module")
def scored(recordings):
    """Correct labels with each voice's own reference; then the labels rotated by one item
    (every label another utterance's) with the next voice's reference."""
    folder, items, refs = recordings
    right = [{**{k: it[k] for k in ("id", "audio", "text")}, "reference": refs[it["voice"]]} for it in items]
    texts = [it["text"] for it in items]
    wrong = [{"id": it["id"], "audio": it["audio"], "text": texts[(i + 1) % len(items)],
              "reference": refs[VOICES[(VOICES.index(it["voice"]) + 1) % len(VOICES)]]} for i, it in enumerate(items)]
    return evaluate(folder, right, "right"), evaluate(folder, wrong, "wrong")


def test_correct_labels_give_a_low_word_error_rate_and_shuffled_ones_a_high_one(scored):
    right, wrong = scored
    assert right["summary"]["items"] == len(VOICES) * PER_VOICE
    assert right["summary"]["wer"] <= 0.10, right["summary"]  # measured 0.086
    assert wrong["summary"]["wer"] >= 0.8, wrong["summary"]  # measured 0.85
    assert right["summary"]["cer"] < wrong["summary"]["cer"]
    row = right["items"][0]
    assert set(row) >= {"id", "audio", "text", "transcript", "wer", "cer", "sim"}
    assert all(w in DIGITS for r in right["items"] for w in r["transcript"].split())  # the word loop holds
    for summary in (right["summary"], wrong["summary"]):  # no expected text, no model: those metrics are null
        assert summary["accuracy"] is None and summary["loss"] is None and summary["wer_expected"] is None


def test_a_reply_scores_closer_to_its_own_voice_than_to_another(scored):
    right, wrong = scored
    own = {r["id"]: r["sim"] for r in right["items"]}
    other = {r["id"]: r["sim"] for r in wrong["items"]}
    closer = sum(own[k] > other[k] for k in own)
    assert closer >= 0.9 * len(own), (closer, len(own))  # measured 32 of 32 (the smallest margin 0.061)
    assert right["summary"]["sim"] > wrong["summary"]["sim"]
