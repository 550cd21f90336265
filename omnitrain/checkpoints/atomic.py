"""Checkpoints that are either whole or absent, on any filesystem.

A save is written under a temporary name *in its destination folder* (never in
``$TMPDIR``: a rename across filesystems becomes a copy, which a kill leaves half done),
flushed to disk, then renamed into place: a file with ``os.replace``, a sharded folder
(ZeRO, FSDP) only after a ``COMPLETE`` marker is written inside it. ``last.ckpt`` is a
symlink to the newest complete checkpoint, swapped atomically after it exists, so a
kill at any moment leaves the previous checkpoints and ``last`` intact.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import IO

COMPLETE = "COMPLETE"
PARTIAL = ".partial"
LAST = "last.ckpt"
STEP_NAME = re.compile(r"^step-(\d+)\.ckpt$")


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """``write(f)`` into a temporary file beside ``path``, fsync, rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def fsync_tree(folder: Path) -> None:
    for file in folder.rglob("*"):
        if file.is_file():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
    fsync_dir(folder)


def finish(partial: Path, final: Path) -> None:
    """Make the written ``partial`` (a file or a folder) the checkpoint ``final``."""
    if partial.is_dir():
        fsync_tree(partial)
        write_file_atomically(partial / COMPLETE, lambda f: f.write(b"complete\n"))
    else:
        with open(partial, "rb") as f:
            os.fsync(f.fileno())
    if final.exists() or final.is_symlink():  # saved again at the same step: replace it whole
        retire(final)
    os.replace(partial, final)
    fsync_dir(final.parent)


def point_last(directory: Path, target: Path) -> None:
    """``directory/last.ckpt`` -> ``target`` (a sibling), swapped atomically."""
    link = directory / LAST
    tmp = directory / f".{LAST}.tmp-{os.getpid()}"
    remove(tmp)
    os.symlink(target.name, tmp)
    if link.exists() and not link.is_symlink():  # a copy from an older run: replace it
        remove(link)
    os.replace(tmp, link)
    fsync_dir(directory)


def retire(path: Path) -> None:
    """Delete a checkpoint out of its ``step-N`` name first, so a kill halfway through
    deleting a sharded folder leaves a ``.old`` leftover, never a "complete" checkpoint
    with files missing."""
    old = path.with_name(path.name + ".old")
    remove(old)
    os.replace(path, old)
    fsync_dir(path.parent)
    remove(old)


def is_complete(path: Path) -> bool:
    """A file renamed into place, or a folder whose ``COMPLETE`` marker was written."""
    path = Path(path)
    if path.name.endswith(PARTIAL) or not path.exists():
        return False
    return path.is_file() or (path / COMPLETE).is_file()


def step_of(path: Path) -> int | None:
    match = STEP_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def step_checkpoints(directory: Path) -> list[Path]:
    """``step-*.ckpt`` in ``directory``, oldest first (complete or not)."""
    found = [(step_of(p), p) for p in Path(directory).glob("step-*.ckpt")]
    return [p for s, p in sorted((s, p) for s, p in found if s is not None)]


def newest_complete(directory: Path) -> Path | None:
    """What ``resume=last`` continues: ``last.ckpt`` if it points to a complete checkpoint,
    else the newest complete step checkpoint."""
    link = Path(directory) / LAST
    if is_complete(link):
        return link.resolve() if link.is_symlink() else link
    done = [p for p in step_checkpoints(directory) if is_complete(p)]
    return done[-1] if done else None


def clean_leftovers(directory: Path) -> list[Path]:
    """Remove what an interrupted save left behind (partial checkpoints, temporary files)."""
    gone = [p for p in Path(directory).iterdir()
            if p.name.endswith((PARTIAL, ".old")) or (p.name.startswith(".") and ".tmp-" in p.name)]
    for p in gone:
        remove(p)
    return gone


def remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
