"""Metrics of the model's own replies at validation (``eval.metrics``), on every rank:
2 ranks (gloo) under DDP, ZeRO-3 and FSDP log the values one rank logs over the same
prompts (3 prompts: uneven shares), where they were skipped before under sharded
weights. Learning rate 1e-30 (below every weight's last bit): every run validates the initial weights, as the one-rank run.
The ASR is a user's plugin from a file (``tests/training/validation/wave_words_asr.py``)."""

from __future__ import annotations

import csv

import pytest

from omnitrain.config.validate import ConfigError
from omnitrain.run_config import compose_config
from tests.helpers import smoke_overrides
from tests.training.test_scale_cpu import ROOT, launch

pytestmark = pytest.mark.slow
ASR = str(ROOT / "tests" / "training" / "validation" / "wave_words_asr.py")
METRICS = ("val/accuracy", "val/wer_expected", "val/cer")


def args(demo_dir, run, *extra: str) -> list[str]:
    return smoke_overrides(demo_dir, run, f"plugins=[{ASR}]", "eval.metrics=[accuracy,wer_expected,cer]",
                           "eval.asr=wave_words", "logger.samples=3", "optim.lr=1e-30", "trainer.max_steps=2",
                           "trainer.val_check_interval=2", "checkpoint.every_n_steps=1000",
                           "checkpoint.save_last=false", *extra)


def logged(run) -> dict[str, float]:
    with open(run / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/accuracy")]
    assert len(rows) == 1, rows
    return {k: float(rows[0][k]) for k in METRICS if rows[0].get(k)}


@pytest.fixture(scope="module")
def one_rank(demo_dir, tmp_path_factory):
    from omnitrain.cli import main

    run = tmp_path_factory.mktemp("val") / "one"
    assert main(["train", *args(demo_dir, run)]) == 0
    return logged(run), run


def test_one_rank_logs_the_metrics_and_the_replies(one_rank):
    metrics, run = one_rank
    assert set(metrics) == set(METRICS)  # cer: the replies say something (wer_expected: vs the sample's reply)
    assert metrics["val/wer_expected"] > 0 and 0 <= metrics["val/accuracy"] <= 1
    assert (run / "samples" / "step-000002" / "replies.md").read_text().count("**generated:**") == 3


@pytest.mark.parametrize("strategy", ["ddp", "deepspeed_zero3", "fsdp"])
def test_two_ranks_log_what_one_rank_logs(strategy, one_rank, demo_dir, tmp_path):
    extra = ["strategy.param_persistence_threshold=0"] if strategy == "deepspeed_zero3" else []
    run = tmp_path / strategy
    launch("-m", "omnitrain", "train", *args(demo_dir, run, "trainer.devices=2", f"strategy={strategy}", *extra))
    want, _ = one_rank
    got = logged(run)
    assert got.keys() == want.keys()
    for name, value in want.items():  # the same replies, reduced over the ranks (sums in another order)
        assert got[name] == pytest.approx(value, rel=1e-6, abs=1e-9), (name, got, want)
    assert (run / "samples" / "step-000002" / "replies.md").read_text().count("**generated:**") == 3


@pytest.mark.parametrize(("extra", "needle"), [
    (["eval.metrics=[bleu]"], "'bleu' is not a metric of replies; use some of ['accuracy', 'wer'"),
    (["eval.metrics=[wer]"], "eval.metrics has wer: set eval.asr (e.g. pocketsphinx"),
    (["eval.metrics=[wer]", "eval.asr=wisper:/m"], "eval.asr: unknown ASR model 'wisper' (did you mean 'whisper'?)"),
    (["eval.metrics=[sim]", "eval.speaker=resemblyzer"], "set eval.reference to a wav"),
    (["eval.metrics=[accuracy]", "logger.samples=0"], "set logger.samples to 1 or more"),
])
def test_eval_settings_fail_before_anything_is_built(extra, needle, demo_dir, tmp_path):
    with pytest.raises(ConfigError) as err:
        compose_config(smoke_overrides(demo_dir, tmp_path, *extra))
    assert needle in str(err.value)
