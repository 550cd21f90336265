"""End to end on real shards: train (Lightning), checkpoint, export, reload, generate."""

from __future__ import annotations

import csv
import json
import math

import pytest
import soundfile as sf
import torch

from omnitrain.bundle import BundleError, export_bundle, load_bundle
from omnitrain.cli import main
from omnitrain.data.pipeline import make_pipeline
from tests.helpers import model_outputs, smoke_overrides


@pytest.fixture
def trained(smoke_trained):
    """A real Trainer.fit in this process (``smoke_trained``), so the trained model stays in hand."""
    return smoke_trained


def test_checkpoints_and_logs(trained):
    """Both saves and last.ckpt; each logged train/loss is the sum of its parts."""
    _, _, run = trained
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["last.ckpt", "step-000005.ckpt", "step-000010.ckpt"]
    with open(run / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    columns = set(rows[0])
    for name in ("train/text", "train/codec", "train/flow", "train/loss", "val/loss", "perf/tokens_per_s"):
        assert name in columns, name
    train = {int(r["step"]): {k: float(r[f"train/{k}"]) for k in ("text", "codec", "flow", "loss")}
             for r in rows if r["train/loss"]}
    assert sorted(train) == [1, 3, 5, 7, 9]  # every trainer.log_every_n_steps=2
    for step, loss in train.items():  # the loss weights are all 1
        want = loss["text"] + loss["codec"] + loss["flow"]
        assert math.isclose(loss["loss"], want, rel_tol=5e-7), (step, loss)  # measured 4.9e-8
    assert train[9]["loss"] < train[1]["loss"]


def test_bundle_reproduces_the_trained_model(trained, tmp_path):
    cfg, module, run = trained
    bundle = export_bundle(run / "checkpoints" / "last.ckpt", tmp_path / "bundle")
    reloaded, bundle_cfg = load_bundle(bundle)
    assert bundle_cfg.position.name == cfg.position.name
    batch = next(iter(make_pipeline(cfg, "val", 256)))
    trained_model = module.model.eval()
    want, got = model_outputs(trained_model, batch), model_outputs(reloaded, batch)
    for name in ("text", "codec", "dit"):  # measured: bit-identical (fp32 weights, fp32 bundle)
        assert torch.equal(want[name], got[name]), f"{name} outputs differ by {(want[name] - got[name]).abs().max()}"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert set(manifest["files"]) >= {"model.safetensors", "config.yaml", "tokenizer/tokenizer.json"}
    assert manifest["plugins"]["position"]["name"] == cfg.position.name
    assert manifest["versions"]["torch"] == torch.__version__


def test_tampered_bundle_is_refused(trained, tmp_path):
    _, _, run = trained
    bundle = export_bundle(run / "checkpoints" / "last.ckpt", tmp_path / "bundle")
    load_bundle(bundle)  # its digests cached: damage after a load is found too
    with open(bundle / "model.safetensors", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(BundleError, match="checksum"):
        load_bundle(bundle)


def test_cli_train_with_workers_export_generate_resume(demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    # one forkserver data worker: the pipeline must pickle and rebuild its plugins there
    overrides = smoke_overrides(demo_dir, run, "data.num_workers=1", "trainer.max_steps=6",
                                "checkpoint.every_n_steps=3")
    assert main(["train", *overrides]) == 0
    assert (run / "checkpoints" / "last.ckpt").exists()
    assert main(["train", *overrides[:-2], "trainer.max_steps=8", "resume=last"]) == 0
    step = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert step == 8
    bundle = tmp_path / "bundle"
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), str(bundle)]) == 0
    wav = tmp_path / "reply.wav"
    heldout = demo_dir / "heldout" / "manifest.jsonl"
    video = next(json.loads(x) for x in heldout.read_text().splitlines() if "video" in x)
    capsys.readouterr()
    code = main(["generate", str(bundle), "--text", video["text"],
                 "--video", str(demo_dir / "heldout" / video["video"]), "--speech", str(wav)])
    assert code == 0
    assert "reply:" in capsys.readouterr().out
    info = sf.info(str(wav))
    assert info.samplerate == 16000 and info.channels == 1
    assert main(["generate", str(bundle), "--manifest", str(heldout), "--speech-dir",
                 str(tmp_path / "replies")]) == 0
    assert len(list((tmp_path / "replies").glob("*.wav"))) == 4


def test_resume_from_missing_checkpoint_fails_early(demo_dir, tmp_path, capsys):
    code = main(["train", *smoke_overrides(demo_dir, tmp_path, "resume=last")])
    assert code == 2 and "no complete checkpoint" in capsys.readouterr().err
