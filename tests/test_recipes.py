"""Every recipe starts, the way its header says to try it: ``size=tiny trainer=cpu``.

Each recipe trains 2 steps with its own plugins, vocabulary, tying, strategy and stage
(a DeepSpeed/FSDP strategy as one CPU process; gradients accumulated over 2 micro-batches
where the recipe says more), saves, resumes for a third step and
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
# At size=tiny these recipes compose to their twin's run but for the keys below (the 3B
# and 7B share everything but the vocabulary and the accumulation; `ablate_position_tmrope`
# is the demo by another name): each twin pair trains once. omni3b_align stays: ZeRO-2
# where omni7b_align runs ZeRO-3.
TWINS = {"omni3b_full": "omni7b_full", "omni3b_long": "omni7b_long", "omni3b_talker": "omni7b_talker",
         "ablate_position_tmrope": "demo"}
TWIN_MAY_DIFFER = {"name", "run_dir", "model", "plan.nodes", "tokenizer.vocab_size",
                   "trainer.accumulate_grad_batches"}
# demo_speech speaks through the codec demo_speech_codec trains (codec.path): its start,
# the way its header says (make demo-speech), is tests/test_demo_speech.py's whole run
STARTED_ELSEWHERE = {"demo_speech": "tests/test_demo_speech.py"}
TRAINED = [r for r in RECIPES if r not in TWINS and r not in STARTED_ELSEWHERE]


def first_losses(run: Path) -> dict[str, float]:
    with open(run / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    return {k: float(v) for k, v in rows[0].items() if k.startswith("train/") and v}


def test_the_recipe_list_is_the_folder():
    assert set(RECIPES) <= set(recipe_files()) and len(RECIPES) >= 19


def flat(node, prefix=""):
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    return {k: v for key, value in node.items() for k, v in flat(value, f"{prefix}{key}.").items()}


@pytest.mark.parametrize("recipe", sorted(TWINS))
def test_a_twin_recipe_composes_to_the_trained_one_but_for_its_vocabulary(recipe):
    from omegaconf import OmegaConf

    from omnitrain.config.compose import compose_run

    mine, twin = (flat(OmegaConf.to_container(compose_run([f"recipe={r}", "size=tiny", "trainer=cpu"]),
                                              resolve=True)) for r in (recipe, TWINS[recipe]))
    differ = {k for k in mine.keys() | twin.keys() if mine.get(k) != twin.get(k)}
    assert differ <= TWIN_MAY_DIFFER, {k: (mine.get(k), twin.get(k)) for k in differ - TWIN_MAY_DIFFER}
    assert TWINS[recipe] in TRAINED


@pytest.mark.parametrize("recipe", TRAINED)
def test_recipe_trains_saves_resumes_and_exports(recipe, request, tmp_path, capsys):
    run = tmp_path / "run"
    groups = getattr(compose_config([f"recipe={recipe}", "size=tiny"]).codec, "groups", 1)
    demo_dir = request.getfixturevalue("pitch_groups_demo_dirs")(groups) if groups > 1 else request.getfixturevalue(
        "demo_dir")
    common = [f"recipe={recipe}", "size=tiny", "trainer=cpu", f"run_dir={run}", "logger=csv",
              f"data.train_shards={demo_dir}/train-*.tar", f"data.val_shards={demo_dir}/val-*.tar",
              "data.num_workers=0", "checkpoint.every_n_steps=1", "trainer.log_every_n_steps=1",
              "trainer.limit_val_batches=0"]  # validation is tested elsewhere; here: start, save, resume
    cfg = compose_config([*common, "trainer.max_steps=2"])
    if cfg.data.batching == "tokens":  # the recipe's budget, in rows short enough for 2 CPU cores
        common += ["data.pack_length=1024", "data.max_tokens=1024", "data.budget_buffer=16"]
    if cfg.trainer.accumulate_grad_batches > 2:  # 8-16 micro-batches a step: 2 take the same path at 1/4-1/8 the time
        common += ["trainer.accumulate_grad_batches=2"]
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
