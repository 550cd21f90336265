"""Checkpoints whole or absent (``omnitrain.checkpoints.atomic``), function by function, on
the real filesystem: what each call leaves in the folder, exactly. The kill -9 runs of
test_fault_injection.py show the same end to end, in minutes; these take a second."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from omnitrain.checkpoints.atomic import (
    COMPLETE,
    LAST,
    clean_leftovers,
    finish,
    fsync_dir,
    is_complete,
    newest_complete,
    point_last,
    remove,
    retire,
    step_checkpoints,
    step_of,
    write_file_atomically,
)
from tests.helpers import fds_on


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def complete_folder(path: Path, *files: str) -> Path:
    """A sharded checkpoint as ``finish`` leaves it: its files and the COMPLETE marker."""
    path.mkdir()
    for name in files:
        (path / name).write_bytes(name.encode())
    (path / COMPLETE).write_bytes(b"complete\n")
    return path


def test_write_file_atomically_leaves_the_content_and_no_temporary(tmp_path):
    """The new bytes replace the old file; the temporary beside it is gone."""
    path = tmp_path / "step-1.ckpt"
    path.write_bytes(b"old")
    write_file_atomically(path, lambda f: f.write(b"new contents"))
    assert path.read_bytes() == b"new contents"
    assert listing(tmp_path) == ["step-1.ckpt"]


def test_an_exception_inside_write_keeps_the_previous_file(tmp_path):
    """A save that fails halfway leaves the previous file as it was and no temporary."""
    path = tmp_path / "step-1.ckpt"
    path.write_bytes(b"old")

    def write(f):
        f.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_file_atomically(path, write)
    assert path.read_bytes() == b"old"
    assert listing(tmp_path) == ["step-1.ckpt"]


def test_fsync_dir_closes_the_folder_it_opens(tmp_path):
    """Every save syncs its folder: a descriptor leaked each time ends a long run (EMFILE)."""
    fsync_dir(tmp_path)
    assert fds_on(tmp_path) == []


def test_finish_renames_a_file_into_place(tmp_path):
    partial, final = tmp_path / "step-2.ckpt.partial", tmp_path / "step-2.ckpt"
    partial.write_bytes(b"weights")
    finish(partial, final)
    assert final.read_bytes() == b"weights"
    assert listing(tmp_path) == ["step-2.ckpt"]


def test_finish_replaces_an_existing_file_of_the_same_step(tmp_path):
    partial, final = tmp_path / "step-2.ckpt.partial", tmp_path / "step-2.ckpt"
    final.write_bytes(b"saved before")
    partial.write_bytes(b"saved again")
    finish(partial, final)
    assert final.read_bytes() == b"saved again"
    assert listing(tmp_path) == ["step-2.ckpt"]


def test_finish_marks_a_folder_complete_then_renames_it(tmp_path):
    """A sharded folder gets its COMPLETE marker (written atomically: no temporary inside)."""
    partial, final = tmp_path / "step-3.ckpt.partial", tmp_path / "step-3.ckpt"
    (partial / "checkpoint").mkdir(parents=True)
    (partial / "checkpoint" / "shard_0.pt").write_bytes(b"rank 0")
    (partial / "latest").write_bytes(b"checkpoint")
    assert not is_complete(partial)
    finish(partial, final)
    assert listing(tmp_path) == ["step-3.ckpt"]
    assert tree(final) == {"checkpoint/shard_0.pt": b"rank 0", "latest": b"checkpoint",
                           COMPLETE: b"complete\n"}


def test_finish_replaces_an_existing_folder_whole(tmp_path):
    """Saved again at the same step: the old folder's files do not mix into the new one."""
    final = complete_folder(tmp_path / "step-3.ckpt", "shard_0.pt", "shard_1.pt")
    partial = tmp_path / "step-3.ckpt.partial"
    partial.mkdir()
    (partial / "shard_0.pt").write_bytes(b"new rank 0")
    finish(partial, final)
    assert tree(final) == {"shard_0.pt": b"new rank 0", COMPLETE: b"complete\n"}
    assert listing(tmp_path) == ["step-3.ckpt"]


def test_point_last_makes_a_relative_symlink_and_swaps_it(tmp_path):
    """``last.ckpt`` names its sibling (the run folder can move), and follows each save."""
    for step in (1, 2):
        (tmp_path / f"step-{step}.ckpt").write_bytes(b"x")
    point_last(tmp_path, tmp_path / "step-1.ckpt")
    assert os.readlink(tmp_path / LAST) == "step-1.ckpt"
    point_last(tmp_path, tmp_path / "step-2.ckpt")
    assert os.readlink(tmp_path / LAST) == "step-2.ckpt"
    assert listing(tmp_path) == [LAST, "step-1.ckpt", "step-2.ckpt"]


def test_point_last_swaps_in_one_rename(tmp_path, monkeypatch):
    """At the rename that swaps it, the old ``last.ckpt`` still points to the previous
    checkpoint: deleting it first would leave no ``last`` to a kill in between."""
    for step in (1, 2):
        (tmp_path / f"step-{step}.ckpt").write_bytes(b"x")
    point_last(tmp_path, tmp_path / "step-1.ckpt")
    seen, real_replace = [], os.replace

    def replace(src, dst):
        seen.append((Path(dst).name, os.readlink(tmp_path / LAST)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    point_last(tmp_path, tmp_path / "step-2.ckpt")
    assert seen == [(LAST, "step-1.ckpt")]
    assert os.readlink(tmp_path / LAST) == "step-2.ckpt"


def test_point_last_replaces_a_regular_file_last(tmp_path):
    """An older run's copy named last.ckpt (a file) becomes the symlink."""
    (tmp_path / "step-4.ckpt").write_bytes(b"x")
    (tmp_path / LAST).write_bytes(b"a copy from an older run")
    point_last(tmp_path, tmp_path / "step-4.ckpt")
    assert os.readlink(tmp_path / LAST) == "step-4.ckpt"
    assert listing(tmp_path) == [LAST, "step-4.ckpt"]


def test_point_last_replaces_a_folder_last(tmp_path):
    """An older run's sharded copy named last.ckpt (a folder) becomes the symlink."""
    (tmp_path / "step-4.ckpt").write_bytes(b"x")
    complete_folder(tmp_path / LAST, "shard_0.pt")
    point_last(tmp_path, tmp_path / "step-4.ckpt")
    assert os.readlink(tmp_path / LAST) == "step-4.ckpt"
    assert listing(tmp_path) == [LAST, "step-4.ckpt"]


def test_point_last_overwrites_a_stale_temporary_of_its_own_pid(tmp_path):
    """A killed run with the same pid (containers reuse them) left its temporary link."""
    (tmp_path / "step-5.ckpt").write_bytes(b"x")
    os.symlink("step-0.ckpt", tmp_path / f".{LAST}.tmp-{os.getpid()}")
    point_last(tmp_path, tmp_path / "step-5.ckpt")
    assert os.readlink(tmp_path / LAST) == "step-5.ckpt"
    assert listing(tmp_path) == [LAST, "step-5.ckpt"]


def test_retire_deletes_a_file(tmp_path):
    (tmp_path / "step-1.ckpt").write_bytes(b"x")
    (tmp_path / "step-2.ckpt").write_bytes(b"y")
    retire(tmp_path / "step-1.ckpt")
    assert listing(tmp_path) == ["step-2.ckpt"]


def test_retire_deletes_a_folder_past_a_stale_old_leftover(tmp_path):
    """A kill during an earlier delete left ``step-1.ckpt.old``: retiring again still works."""
    complete_folder(tmp_path / "step-1.ckpt", "shard_0.pt")
    stale = tmp_path / "step-1.ckpt.old"
    stale.mkdir()
    (stale / "shard_1.pt").write_bytes(b"half deleted")
    retire(tmp_path / "step-1.ckpt")
    assert listing(tmp_path) == []


def test_is_complete(tmp_path):
    """Complete: a file in place, or a folder with its marker; never a ``.partial`` name."""
    (tmp_path / "step-1.ckpt").write_bytes(b"x")
    (tmp_path / "step-2.ckpt.partial").write_bytes(b"x")
    (tmp_path / "step-3.ckpt").mkdir()
    (tmp_path / "step-3.ckpt" / "shard_0.pt").write_bytes(b"x")
    complete_folder(tmp_path / "step-4.ckpt", "shard_0.pt")
    complete_folder(tmp_path / "step-5.ckpt.partial", "shard_0.pt")
    assert is_complete(tmp_path / "step-1.ckpt") is True
    assert is_complete(tmp_path / "step-2.ckpt.partial") is False
    assert is_complete(tmp_path / "step-3.ckpt") is False
    assert is_complete(tmp_path / "step-4.ckpt") is True
    assert is_complete(tmp_path / "step-5.ckpt.partial") is False
    assert is_complete(tmp_path / "step-6.ckpt") is False


def test_is_complete_follows_last(tmp_path):
    complete_folder(tmp_path / "step-1.ckpt", "shard_0.pt")
    (tmp_path / "step-2.ckpt").mkdir()
    os.symlink("step-1.ckpt", tmp_path / LAST)
    assert is_complete(tmp_path / LAST) is True
    point_last(tmp_path, tmp_path / "step-2.ckpt")
    assert is_complete(tmp_path / LAST) is False
    point_last(tmp_path, tmp_path / "step-9.ckpt")  # dangling
    assert is_complete(tmp_path / LAST) is False


@pytest.mark.parametrize(("name", "step"), [
    ("step-12.ckpt", 12), ("step-000120.ckpt", 120), ("step-0.ckpt", 0),
    ("step-12.ckpt.partial", None), ("step-12.ckpt.old", None), ("last.ckpt", None),
    ("step-x.ckpt", None), ("step-.ckpt", None), ("xstep-1.ckpt", None), ("step-1.pt", None),
])
def test_step_of(name, step):
    assert step_of(Path("/run/checkpoints") / name) == step


def test_step_checkpoints_in_numeric_order(tmp_path):
    """Oldest first by step number (step-9 before step-10, whatever the padding), complete
    or not; other names ignored."""
    for name in ("step-10.ckpt", "step-9.ckpt", "step-000011.ckpt", "step-x.ckpt", "step-3.ckpt.partial",
                 "step-4.ckpt.old", "notes.txt", LAST):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "step-12.ckpt").mkdir()  # incomplete folder: listed too
    assert [p.name for p in step_checkpoints(tmp_path)] == [
        "step-9.ckpt", "step-10.ckpt", "step-000011.ckpt", "step-12.ckpt"]
    assert all(p.parent == tmp_path for p in step_checkpoints(tmp_path))


def test_step_checkpoints_of_an_empty_folder(tmp_path):
    assert step_checkpoints(tmp_path) == []


def test_newest_complete_is_what_last_points_to(tmp_path):
    (tmp_path / "step-1.ckpt").write_bytes(b"x")
    (tmp_path / "step-2.ckpt").write_bytes(b"x")
    point_last(tmp_path, tmp_path / "step-1.ckpt")  # an older one: last wins over step numbers
    assert newest_complete(tmp_path) == (tmp_path / "step-1.ckpt").resolve()


def test_newest_complete_takes_a_regular_file_last_as_it_is(tmp_path):
    (tmp_path / LAST).write_bytes(b"x")
    (tmp_path / "step-1.ckpt").write_bytes(b"x")
    assert newest_complete(tmp_path) == tmp_path / LAST


def test_newest_complete_falls_back_when_last_points_to_an_incomplete_checkpoint(tmp_path):
    """A kill before the marker: resume takes the newest complete step, by number."""
    for step in (1, 2, 10):
        (tmp_path / f"step-{step}.ckpt").write_bytes(b"x")
    (tmp_path / "step-11.ckpt").mkdir()
    (tmp_path / "step-12.ckpt.partial").write_bytes(b"x")
    point_last(tmp_path, tmp_path / "step-11.ckpt")
    assert newest_complete(tmp_path) == tmp_path / "step-10.ckpt"


def test_newest_complete_without_a_complete_checkpoint(tmp_path):
    assert newest_complete(tmp_path) is None
    (tmp_path / "step-1.ckpt").mkdir()
    (tmp_path / "step-2.ckpt.partial").write_bytes(b"x")
    assert newest_complete(tmp_path) is None


def test_clean_leftovers_removes_exactly_the_leftovers(tmp_path):
    """Partial saves, half-retired ``.old`` copies and hidden temporaries go; checkpoints,
    ``last.ckpt`` and files that only look alike stay."""
    (tmp_path / "step-1.ckpt.partial").mkdir()
    (tmp_path / "step-1.ckpt.partial" / "shard_0.pt").write_bytes(b"x")
    (tmp_path / "step-2.ckpt.partial").write_bytes(b"x")
    (tmp_path / "step-3.ckpt.old").write_bytes(b"x")
    (tmp_path / ".step-4.ckpt.tmp-123").write_bytes(b"x")
    os.symlink("step-5.ckpt", tmp_path / f".{LAST}.tmp-77")
    leftovers = {"step-1.ckpt.partial", "step-2.ckpt.partial", "step-3.ckpt.old", ".step-4.ckpt.tmp-123",
                 f".{LAST}.tmp-77"}
    complete_folder(tmp_path / "step-5.ckpt", "shard_0.pt")
    (tmp_path / "step-6.ckpt").write_bytes(b"x")
    os.symlink("step-5.ckpt", tmp_path / LAST)
    (tmp_path / ".gitignore").write_bytes(b"x")
    (tmp_path / "notes.tmp-1").write_bytes(b"x")
    kept = [".gitignore", LAST, "notes.tmp-1", "step-5.ckpt", "step-6.ckpt"]

    gone = clean_leftovers(tmp_path)
    assert sorted(p.name for p in gone) == sorted(leftovers)
    assert all(p.parent == tmp_path for p in gone)
    assert listing(tmp_path) == kept
    assert tree(tmp_path / "step-5.ckpt") == {"shard_0.pt": b"shard_0.pt", COMPLETE: b"complete\n"}


def test_clean_leftovers_of_a_clean_folder(tmp_path):
    (tmp_path / "step-1.ckpt").write_bytes(b"x")
    assert clean_leftovers(tmp_path) == []
    assert listing(tmp_path) == ["step-1.ckpt"]


def test_remove_a_file_a_folder_and_a_missing_path(tmp_path):
    (tmp_path / "file").write_bytes(b"x")
    complete_folder(tmp_path / "folder", "shard_0.pt")
    remove(tmp_path / "file")
    remove(tmp_path / "folder")
    remove(tmp_path / "missing")
    assert listing(tmp_path) == []


def test_remove_a_symlink_leaves_its_target(tmp_path):
    """Removing ``last.ckpt`` must not delete the checkpoint it points to."""
    complete_folder(tmp_path / "step-1.ckpt", "shard_0.pt")
    (tmp_path / "step-2.ckpt").write_bytes(b"x")
    os.symlink("step-1.ckpt", tmp_path / "to-folder")
    os.symlink("step-2.ckpt", tmp_path / "to-file")
    remove(tmp_path / "to-folder")
    remove(tmp_path / "to-file")
    assert listing(tmp_path) == ["step-1.ckpt", "step-2.ckpt"]
    assert tree(tmp_path / "step-1.ckpt") == {"shard_0.pt": b"shard_0.pt", COMPLETE: b"complete\n"}
