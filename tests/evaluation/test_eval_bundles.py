"""``omnitrain eval`` on bundles: two checkpoints of one run reply to the held-out prompts,
side by side. Exact-match accuracy is what ``generate`` says for each prompt, and the
teacher-forced loss of the expected reply is the model's own text loss on that
conversation (computed by its training forward, not by eval's code)."""

from __future__ import annotations

import json
import math

import pytest
import soundfile as sf
import torch

from omnitrain.bundle import export_bundle
from omnitrain.cli import main
from omnitrain.data.collate import collate
from omnitrain.inference.generate import Generator, user_turn
from omnitrain.inference.prompts import read_file
from omnitrain.tokens import IGNORE_INDEX

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundles(smoke_trained, tmp_path_factory):
    _, _, run = smoke_trained
    out = tmp_path_factory.mktemp("bundles")
    return [export_bundle(run / "checkpoints" / name, out / stem)
            for name, stem in (("step-000005.ckpt", "early"), ("last.ckpt", "last"))]


def prompt_of(row: dict, folder) -> dict:
    return user_turn(row["text"], *(str(folder / row[k]) if row.get(k) else None for k in ("audio", "image", "video")))


def test_two_bundles_side_by_side_score_as_generate_and_the_training_loss_say(demo_dir, bundles, tmp_path, capsys):
    heldout = demo_dir / "heldout"
    rows = [json.loads(line) for line in (heldout / "manifest.jsonl").read_text().splitlines()]
    last = Generator(bundles[1])
    said = [last(prompt_of(r, heldout)).text for r in rows]
    rows[0]["expected"] = said[0]  # one reply the last bundle gives word for word: accuracy is not 0 by default
    manifest = tmp_path / "manifest.jsonl"  # media paths made absolute: the demo's folder stays untouched
    manifest.write_text("".join(json.dumps({k: str(heldout / v) if k in ("audio", "image", "video") else v
                                            for k, v in r.items()}) + "\n" for r in rows))
    out = tmp_path / "report.json"
    capsys.readouterr()
    assert main(["eval", *map(str, bundles), "--manifest", str(manifest), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "early" in table.splitlines()[0] and "last" in table.splitlines()[0]
    report = json.loads(out.read_text())
    assert list(report["bundles"]) == ["early", "last"] and report["asr"] is None
    mine = report["bundles"]["last"]
    assert [i["text"] for i in mine["items"]] == said  # the replies generate gives
    correct = [s.strip() == str(r["expected"]).strip() for s, r in zip(said, rows, strict=True)]
    assert mine["summary"]["accuracy"] == sum(correct) / len(correct) > 0
    summed = tokens = 0
    for item, row in zip(mine["items"], rows, strict=True):  # each reply's loss: the training forward's text loss
        turns = prompt_of(row, heldout)["turns"] + [{"role": "assistant", "content": [{"text": str(row["expected"])}]}]
        example = last.builder.build({"turns": turns}, read_file, key="x")
        with torch.no_grad():
            want = float(last.model(collate([example], last.pad))["text"])
        assert item["loss"] == pytest.approx(want, rel=1e-5)  # measured 0 (the same fp32 ops)
        n = int((example.labels != IGNORE_INDEX).sum())  # the reply's tokens and its closing one
        summed, tokens = summed + want * n, tokens + n
        assert item["ppl"] == pytest.approx(math.exp(want), rel=1e-5)
        assert sf.info(item["audio"]).samplerate == 16000  # the spoken reply, kept beside the report
        assert item["transcript"] is None and item["wer"] is None and item["sim"] is None  # no --asr/--speaker
    assert mine["summary"]["loss"] == pytest.approx(summed / tokens, rel=1e-5)  # per token, not per item
    early = report["bundles"]["early"]["summary"]
    assert early["loss"] != mine["summary"]["loss"] and early["ppl"] == pytest.approx(math.exp(early["loss"]))
    assert mine["summary"]["wer"] is None and mine["summary"]["sim"] is None


def test_bad_requests_say_what_to_change(bundles, tmp_path, capsys):
    assert main(["eval", str(bundles[1])]) == 2
    assert "give --manifest (with bundles) or --audio" in capsys.readouterr().err
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"text": "hi", "audio": "missing.wav"}\n')
    assert main(["eval", str(bundles[1]), "--manifest", str(bad)]) == 2
    assert f"{bad}:1: audio file" in capsys.readouterr().err
    sf.write(tmp_path / "x.wav", torch.zeros(1600).numpy(), 16000)
    bad.write_text('{"audio": "x.wav"}\n')
    assert main(["eval", "--audio", str(bad), "--asr", "whisperr"]) == 2
    assert "unknown ASR model 'whisperr' (did you mean 'whisper'?); registered: ['pocketsphinx', " in \
        capsys.readouterr().err


def test_device_dtype_and_batch(demo_dir, bundles, tmp_path, capsys):
    """``--dtype bf16`` loads the weights in bf16 and still replies;
    the replies of ``--batch 3`` are those of ``--batch 1``; a device this machine lacks,
    or a batch of 0, is a clear error before any bundle loads."""
    from omnitrain.bundle import load_bundle

    model, _ = load_bundle(bundles[1], dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    heldout = demo_dir / "heldout"
    manifest = heldout / "manifest.jsonl"
    texts = {}
    for extra in (["--batch", "1"], ["--batch", "3"], ["--dtype", "bf16"]):
        out = tmp_path / f"r{len(texts)}.json"
        assert main(["eval", str(bundles[1]), "--manifest", str(manifest), "--out", str(out), *extra]) == 0
        texts[" ".join(extra)] = [i["text"] for i in json.loads(out.read_text())["bundles"]["last"]["items"]]
    assert texts["--batch 3"] == texts["--batch 1"] and len(texts["--dtype bf16"]) == len(texts["--batch 1"])
    capsys.readouterr()
    assert main(["eval", str(bundles[1]), "--manifest", str(manifest), "--batch", "0"]) == 2
    assert "--batch 0: give 1 or more" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["eval", str(bundles[1]), "--manifest", str(manifest), "--device", "cuda"]) == 2
        assert "no CUDA GPU visible" in capsys.readouterr().err
        assert main(["generate", str(bundles[1]), "--text", "hi", "--device", "cuda"]) == 2
        assert "no CUDA GPU visible" in capsys.readouterr().err
