"""``omnitrain eval --voices``: each recording's nearest voice (the mean speaker embedding of
that voice's recordings) against the voice it should be; real espeak-ng speech."""

from __future__ import annotations

import importlib.util
import json

import pytest
import soundfile as sf

from omnitrain.cli import main
from tests.evaluation.espeak import DIGITS, speak

if importlib.util.find_spec("resemblyzer") is None:  # its weights only: importing it needs librosa
    pytest.skip("needs the resemblyzer weights (pip install --no-deps resemblyzer)", allow_module_level=True)
VOICES = {"ava": "en-us+f2", "cal": "en-us+klatt4", "dan": "en-us+edward"}


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    folder = tmp_path_factory.mktemp("voices")
    voices, items = [], []
    for name, voice in VOICES.items():
        for i, (a, b) in enumerate(((1, 2), (3, 4), (5, 6), (7, 8))):
            sf.write(folder / f"{name}_v{i}.wav", speak(f"{DIGITS[a]} {DIGITS[b]}", voice).numpy(), 16000)
            voices.append({"speaker": name, "audio": f"{name}_v{i}.wav"})
        for i, (a, b) in enumerate(((9, 0), (2, 6), (8, 1))):
            sf.write(folder / f"{name}_{i}.wav", speak(f"{DIGITS[a]} {DIGITS[b]}", voice).numpy(), 16000)
            items.append({"id": f"{name}{i}", "audio": f"{name}_{i}.wav", "speaker": name})
    (folder / "voices.jsonl").write_text("".join(json.dumps(v) + "\n" for v in voices))
    return folder, items


def voice_id(folder, items, tag) -> dict:
    (folder / f"{tag}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    assert main(["eval", "--audio", str(folder / f"{tag}.jsonl"), "--speaker", "resemblyzer",
                 "--voices", str(folder / "voices.jsonl"), "--out", str(folder / f"{tag}.json")]) == 0
    return json.loads((folder / f"{tag}.json").read_text())["bundles"]["audio"]


def test_each_recording_is_nearest_its_own_voice(recordings):
    folder, items = recordings
    report = voice_id(folder, items, "right")
    assert report["summary"]["voice_id"] >= 8 / 9
    assert all(row["voice"] in VOICES for row in report["items"])


def test_recordings_labelled_with_another_voice_score_low(recordings):
    folder, items = recordings
    names = list(VOICES)
    wrong = [{**r, "speaker": names[(names.index(r["speaker"]) + 1) % len(names)]} for r in items]
    assert voice_id(folder, wrong, "wrong")["summary"]["voice_id"] <= 1 / 9


def test_voices_need_a_speaker_encoder(recordings, capsys):
    folder, _ = recordings
    assert main(["eval", "--audio", str(folder / "right.jsonl"), "--voices", str(folder / "voices.jsonl")]) == 2
    assert "--speaker" in capsys.readouterr().err
