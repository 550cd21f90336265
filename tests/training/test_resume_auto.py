"""``resume=auto``: one command that a scheduler can retry. On an empty run_dir it starts
fresh; run again, it continues from the newest complete checkpoint (an incomplete
newest one is skipped); a run_dir whose checkpoints are all incomplete is refused
unless ``overwrite=true`` starts over."""

from __future__ import annotations

import csv
from pathlib import Path

from omnitrain.checkpoints.atomic import point_last
from omnitrain.cli import main
from tests.helpers import smoke_overrides

EXTRA = ("checkpoint.every_n_steps=2", "trainer.log_every_n_steps=1", "trainer.limit_val_batches=0",
         "data.epoch_batches=100", "resume=auto")


def command(demo_dir: Path, run: Path, steps: int, *extra: str) -> list[str]:
    """The same command every time; only ``trainer.max_steps`` grows."""
    return ["train", *smoke_overrides(demo_dir, run, *EXTRA, f"trainer.max_steps={steps}", *extra)]


def steps_logged(run: Path) -> list[int]:
    with open(run / "csv" / "metrics.csv") as f:
        return sorted({int(float(r["step"])) for r in csv.DictReader(f) if r.get("train/loss")})


def stamps(run: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every step checkpoint: a rewritten checkpoint changes both."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (run / "checkpoints").glob("step-*.ckpt")}


def test_the_same_command_starts_fresh_then_resumes_from_the_newest_checkpoint(demo_dir, tmp_path, caplog):
    run = tmp_path / "run"
    assert main(command(demo_dir, run, 4)) == 0
    assert f"resume=auto: no checkpoint in {run / 'checkpoints'}: starting a fresh run" in caplog.text
    assert steps_logged(run) == [0, 1, 2, 3]
    before = stamps(run)
    assert sorted(before) == ["step-000002.ckpt", "step-000004.ckpt"]
    caplog.clear()

    assert main(command(demo_dir, run, 6)) == 0
    assert "resume=auto: resuming from step-000004.ckpt" in caplog.text
    assert "starting a fresh run" not in caplog.text
    assert steps_logged(run) == [0, 1, 2, 3, 4, 5]
    after = stamps(run)
    # it continued from step 4: steps 2 and 4 were not trained and saved again
    assert {k: after[k] for k in before} == before and sorted(after)[-1] == "step-000006.ckpt"
    assert (run / "checkpoints" / "last.ckpt").resolve().name == "step-000006.ckpt"


def test_an_incomplete_newest_checkpoint_is_skipped(demo_dir, tmp_path, caplog):
    run = tmp_path / "run"
    assert main(command(demo_dir, run, 4)) == 0
    folder = run / "checkpoints"
    # a sharded save of step 6 killed before its COMPLETE marker, last.ckpt already on it
    (folder / "step-000006.ckpt").mkdir()
    (folder / "step-000006.ckpt" / "rank_0.pt").write_bytes(b"half written")
    point_last(folder, folder / "step-000006.ckpt")
    before = stamps(run)
    caplog.clear()

    assert main(command(demo_dir, run, 6)) == 0
    assert "resume=auto: last.ckpt is missing or incomplete" in caplog.text
    assert "newest complete checkpoint step-000004.ckpt" in caplog.text
    assert steps_logged(run) == [0, 1, 2, 3, 4, 5]
    after = stamps(run)
    assert after["step-000002.ckpt"] == before["step-000002.ckpt"]
    assert after["step-000004.ckpt"] == before["step-000004.ckpt"]
    assert (folder / "step-000006.ckpt").is_file(), "the incomplete folder was replaced by a real save"


def test_only_incomplete_checkpoints_are_refused_unless_overwrite(demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    stale = run / "checkpoints" / "step-000008.ckpt"
    stale.mkdir(parents=True)  # a sharded save killed before its COMPLETE marker
    assert main(command(demo_dir, run, 2)) == 2
    err = capsys.readouterr().err
    assert "resume=auto" in err and "no complete checkpoint" in err and "overwrite=true" in err
    assert stale.is_dir() and not (run / "csv").exists(), "nothing was started"

    # overwrite=true: a fresh run that removes them (the trainer is told it is a fresh
    # run, not "auto", or step 8 would outlive the run and be resumed next time)
    assert main(command(demo_dir, run, 2, "overwrite=true")) == 0
    assert steps_logged(run) == [0, 1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.ckpt", "step-000002.ckpt"]
