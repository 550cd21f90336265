"""`omnitrain summary --require-drop`, the gate `make demo` (run by CI) passes a run by: it
fails a run whose loss did not fall far enough, or that never logged the loss."""

from __future__ import annotations

from omnitrain.cli import main

# first 2.0 -> last 0.8 (ratio 0.4); first 1.0 -> last 0.7 (ratio 0.7). `last` averages the
# final logged values: constant tails keep the ratios exact.
METRICS = "step,train/text,train/codec\n" + "".join(
    f"{step},{text},{codec}\n" for step, text, codec in
    [(0, 2.0, 1.0), (10, 1.5, 0.9), (20, 0.8, 0.7), (30, 0.8, 0.7), (40, 0.8, 0.7), (50, 0.8, 0.7),
     (60, 0.8, 0.7), (70, 0.8, 0.7), (80, 0.8, 0.7), (90, 0.8, 0.7), (100, 0.8, 0.7)])


def run_dir(tmp_path):
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text(METRICS)
    return str(tmp_path)


def test_a_loss_that_fell_far_enough_passes(tmp_path, capsys):
    assert main(["summary", run_dir(tmp_path), "--require-drop", "0.5", "--metrics", "train/text"]) == 0
    assert "ok: train/text each fell to <= 0.5" in capsys.readouterr().out


def test_a_loss_that_did_not_fall_far_enough_fails_and_is_named(tmp_path, capsys):
    assert main(["summary", run_dir(tmp_path), "--require-drop", "0.5", "--metrics", "train/text,train/codec"]) == 1
    err = capsys.readouterr().err
    assert "['train/codec']" in err and "train/text'" not in err
    assert main(["summary", str(tmp_path), "--require-drop", "0.7", "--metrics", "train/text,train/codec"]) == 0


def test_a_loss_never_logged_fails(tmp_path, capsys):
    assert main(["summary", run_dir(tmp_path), "--require-drop", "0.9", "--metrics", "train/flow"]) == 1
    assert "['train/flow']" in capsys.readouterr().err


def test_by_default_the_gate_checks_the_losses_the_run_weighs(tmp_path, capsys):
    """Without --metrics: the task's losses whose weight in the run's config is above 0. A
    run with no DiT (loss.flow=0, as dit=none requires) logs no flow loss and passes on the
    rest; the same run weighing flow fails for want of it."""
    run = run_dir(tmp_path)
    (tmp_path / "config.yaml").write_text("task: omni\nloss: {text: 1.0, codec: 1.0, flow: 0.0}\n")
    assert main(["summary", run, "--require-drop", "0.7"]) == 0
    assert "ok: train/text,train/codec each fell" in capsys.readouterr().out
    (tmp_path / "config.yaml").write_text("task: omni\nloss: {text: 1.0, codec: 1.0, flow: 1.0}\n")
    assert main(["summary", run, "--require-drop", "0.7"]) == 1
    assert "['train/flow']" in capsys.readouterr().err
