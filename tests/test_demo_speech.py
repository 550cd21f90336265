"""``make demo-speech``'s path in seconds (tiny sizes, a few steps): spoken data, a codec
trained on it and exported, copy-synthesis, the shards re-encoded with the codec, the model
trained on them with 4 voices, exported, and ``omnitrain eval`` with the offline recogniser,
speaker encoder and voices; then the report and its spectrogram. Each command as the
Makefile runs it, through ``omnitrain.cli.main``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from omnitrain.cli import main

pytestmark = pytest.mark.slow
pytest.importorskip("pocketsphinx", reason="needs the eval extra (pocketsphinx)")
ROOT = Path(__file__).resolve().parents[1]


def test_the_makefile_runs_these_steps():
    target = (ROOT / "Makefile").read_text().split("demo-speech: install")[1].split("\n\n")[0]
    steps = re.findall(r"omnitrain (data demo|train recipe=demo_speech_codec|export|data resynth|data encode|"
                       r"train recipe=demo_speech |eval)", target)
    assert steps == ["data demo", "train recipe=demo_speech_codec", "export", "data resynth", "data encode",
                     "train recipe=demo_speech ", "export", "eval", "eval", "eval"]
    assert "--profile spoken" in target and "demo_speech_report.py" in target


def test_spoken_demo_path_end_to_end(spoken_demo_dir, tmp_path, capsys):
    data, run = spoken_demo_dir, tmp_path / "run"
    held = data / "heldout"
    fast = ["logger=csv", "data.num_workers=0", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1"]
    assert main(["train", "recipe=demo_speech_codec", f"run_dir={run}/codec-run", f"data.train_shards={data}/train-*.tar",
                 f"data.val_shards={data}/val-*.tar", "codec.dim=32", "codec.layers=1", "trainer.max_steps=4",
                 "trainer.val_check_interval=4", "checkpoint.every_n_steps=4", *fast]) == 0
    assert main(["export", f"{run}/codec-run/checkpoints/last.ckpt", f"{run}/codec"]) == 0
    assert main(["data", "resynth", f"{held}/truth.jsonl", f"{run}/resynth", "--codec", f"{run}/codec"]) == 0
    codes = tmp_path / "codes"
    assert main(["data", "encode", str(data), str(codes), "--codec", f"{run}/codec", "recipe=demo_speech"]) == 0
    assert main(["train", "recipe=demo_speech", f"run_dir={run}/train", f"codec.path={run}/codec", "size=tiny",
                 f"data.train_shards={codes}/train-*.tar", f"data.val_shards={codes}/val-*.tar", "data.batch_size=4",
                 "trainer.max_steps=3", "trainer.val_check_interval=3", "checkpoint.every_n_steps=3", *fast]) == 0
    assert main(["export", f"{run}/train/checkpoints/last.ckpt", f"{run}/bundle"]) == 0
    shutil.rmtree(run / "codec")  # the bundle speaks with its own copy of the trained codec
    assert (run / "bundle" / "codec" / "codec.json").is_file()
    scorers = ["--asr", "pocketsphinx", "--closed-vocabulary", "--speaker", "resemblyzer",
               "--voices", f"{held}/voices.jsonl"]
    assert main(["eval", "--audio", f"{held}/truth.jsonl", *scorers, "--out", f"{run}/truth.json"]) == 0
    assert main(["eval", "--audio", f"{run}/resynth/manifest.jsonl", *scorers, "--out", f"{run}/resynth.json"]) == 0
    assert main(["eval", f"{run}/bundle", "--manifest", f"{held}/manifest.jsonl", *scorers,
                 "--out", f"{run}/eval.json"]) == 0

    truth = json.loads((run / "truth.json").read_text())["bundles"]["audio"]
    # the real recordings: the recogniser hears the words, and each is nearest its own voice
    assert truth["summary"]["wer"] <= 0.25 and truth["summary"]["voice_id"] >= 0.75
    report = json.loads((run / "eval.json").read_text())
    (entry,) = report["bundles"].values()
    for row in entry["items"]:
        assert Path(row["audio"]).is_file() and row["expected"] and "text" in row
        assert row["voice"] in ("ava", "bea", "cal", "dan")
    assert entry["summary"]["voice_id"] is not None and entry["summary"]["wer"] is not None
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo_speech_report.py"), str(run)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "copy-synthesis" in out.stdout and (run / "spectrogram.png").stat().st_size > 1000
