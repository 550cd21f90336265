"""``run_dir`` and ``resume`` given as URLs are refused before any work: checkpoints need a
filesystem, and ``run_dir=s3://bucket/run1`` used to write a local folder named ``s3:``."""

from __future__ import annotations

import pytest

from omnitrain.cli import main


@pytest.mark.parametrize("override", ["run_dir=s3://bucket/run1", "run_dir=gs://bucket/run1",
                                      "resume=https://h/runs/last.ckpt"])
def test_a_url_for_checkpoints_is_refused_before_any_work(tmp_path, monkeypatch, capsys, override):
    monkeypatch.chdir(tmp_path)
    run_dir = [] if override.startswith("run_dir") else [f"run_dir={tmp_path / 'run'}"]
    code = main(["train", "recipe=smoke", override, *run_dir])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{override}: a URL cannot hold checkpoints; they need a shared filesystem" in err
    assert "local or network-mounted path" in err and "FUSE mount" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no s3:, gs: or run folder


def test_a_local_run_dir_with_a_colon_is_still_a_path(tmp_path, monkeypatch):
    from omnitrain.run_config import compose_config

    monkeypatch.chdir(tmp_path)
    assert compose_config(["recipe=smoke", "run_dir=runs/a:b"]).run_dir == "runs/a:b"
