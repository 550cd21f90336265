"""Every recipe starts, the way its header says to try it: ``size=tiny trainer=cpu``.

Each recipe trains 2 steps with its own plugins, vocabulary, tying, strategy and stage
(a DeepSpeed/FSDP strategy as one CPU process), saves, resumes for a third step and
exports a bundle; a model built from scratch starts near ln(vocab) (reference init).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from omnitrain.cli import main
from omnitrain.config.compose import recipe_files
from omnitrain.run_config import compose_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.stem for p in (ROOT / "recipes").glob("*.yaml"))
pytestmark = pytest.mark.slow


def first_losses(run: Path) -> dict[str, float]:
    with open(run / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    return {k: float(v) for k, v in rows[0].items() if k.startswith("train/") and v}


def test_the_recipe_list_is_the_folder():
    assert set(RECIPES) <= set(recipe_files()) and len(RECIPES) >= 19


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_saves_resumes_and_exports(recipe, demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    common = [f"recipe={recipe}", "size=tiny", "trainer=cpu", f"run_dir={run}", "logger=csv",
              f"data.train_shards={demo_dir}/train-*.tar", f"data.val_shards={demo_dir}/val-*.tar",
              "data.num_workers=0", "checkpoint.every_n_steps=1", "trainer.log_every_n_steps=1",
              "trainer.limit_val_batches=0"]  # validation is tested elsewhere; here: start, save, resume
    cfg = compose_config([*common, "trainer.max_steps=2"])
    if cfg.data.batching == "tokens":  # the recipe's budget, in rows short enough for 2 CPU cores
        common += ["data.pack_length=1024", "data.max_tokens=1024", "data.budget_buffer=16"]
    assert main(["train", *common, "trainer.max_steps=2"]) == 0, capsys.readouterr().err[-3000:]
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.exists() and (run / "checkpoints" / "step-000002.ckpt").exists()
    assert f"next: omnitrain export {ckpt}" in capsys.readouterr().out
    if cfg.task == "omni" and cfg.loss.text > 0:
        vocab = compose_config(common).tokenizer
        from omnitrain.registry import build

        ln_v = math.log(build("tokenizer", vocab).vocab_size)
        assert abs(first_losses(run)["train/text"] - ln_v) <= 0.10 * ln_v, (first_losses(run), ln_v)
    more = 4 if cfg.task == "vocoder" else 3  # the vocoder stage steps two optimizers per batch
    assert main(["train", *common, f"trainer.max_steps={more}", "resume=last"]) == 0, capsys.readouterr().err[-3000:]
    assert (run / "checkpoints" / f"step-{more:06d}.ckpt").exists()
    assert main(["export", str(ckpt), str(tmp_path / "bundle")]) == 0
    assert (tmp_path / "bundle" / "model.safetensors").exists()


def test_a_plugin_swaps_under_a_recipe_at_its_size():
    """A recipe's size applies to whichever plugin fills the slot."""
    faithful = compose_config(["recipe=omni7b_full"])
    baseline = compose_config(["recipe=omni7b_full", "audio_encoder=mel_conv", "talker=prefix"])
    assert (faithful.audio_encoder.name, faithful.audio_encoder.d_model) == ("whisper_audio", 1280)
    assert (baseline.audio_encoder.name, baseline.audio_encoder.dim, baseline.audio_encoder.layers) == ("mel_conv", 1280, 32)
    assert baseline.talker.layers == faithful.talker.layers == 24
    mine = compose_config(["recipe=omni7b_full", "thinker.layers=3"])  # the command line wins over the size
    assert mine.thinker.layers == 3 and mine.thinker.hidden_size == 3584


@pytest.mark.parametrize("overrides", [("recipe=smoke", "talker=dual_track"),
                                       ("recipe=omni7b_full", "audio_encoder=mel_conv", "size=tiny",
                                        "trainer=cpu", "data.pack_length=512", "data.max_tokens=512")])
def test_swapped_plugins_train_two_steps(overrides, demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    args = [*overrides, f"run_dir={run}", "logger=csv", f"data.train_shards={demo_dir}/train-*.tar",
            f"data.val_shards={demo_dir}/val-*.tar", "data.num_workers=0", "trainer.max_steps=2",
            "trainer.limit_val_batches=0", "trainer.log_every_n_steps=1"]
    assert main(["train", *args]) == 0, capsys.readouterr().err[-3000:]
    with open(run / "csv" / "metrics.csv") as f:
        assert len([r for r in csv.DictReader(f) if r.get("train/loss")]) == 2
