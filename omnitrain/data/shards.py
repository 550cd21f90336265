"""Shard lists: expand brace/glob/directory specs, fail early when shards are missing."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import braceexpand


class ShardError(FileNotFoundError):
    pass


def resolve_shards(spec: str | Sequence[str] | None, field: str) -> list[str]:
    """``data/demo/train-{000000..000003}.tar``, ``data/demo/*.tar``, a directory, or a list."""
    if not spec:
        raise ShardError(f"{field} is empty: point it at .tar shards (a path, glob, brace pattern or directory)")
    specs = [spec] if isinstance(spec, str) else list(spec)
    found: list[str] = []
    missing: list[str] = []
    for s in specs:
        for item in braceexpand.braceexpand(str(s)):
            p = Path(item).expanduser()
            if p.is_dir():
                tars = sorted(str(t) for t in p.glob("*.tar"))
                (found.extend(tars) if tars else missing.append(f"{item}/*.tar"))
            elif any(c in item for c in "*?["):
                matches = sorted(glob.glob(str(p)))
                (found.extend(matches) if matches else missing.append(item))
            elif p.is_file():
                found.append(str(p))
            else:
                missing.append(item)
    if missing:
        raise ShardError(
            f"{field}: shard(s) not found: {listed(missing)}. Create shards with "
            f"`omnitrain data demo DIR` or `omnitrain data pack MANIFEST DIR`, or fix the path."
        )
    empty = [f"{u} ({why})" for u in found if (why := empty_reason(u))]
    if empty:
        raise ShardError(f"{field}: shard(s) with no samples: {listed(empty)}. Remove them from {field} "
                         "or pack them again (`omnitrain data pack`)")
    return found


def listed(items: list[str]) -> str:
    """The first five of ``items`` and how many more: error messages stay readable."""
    return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def empty_reason(url: str) -> str | None:
    """Why a local shard can hold no sample (0 bytes, an end-of-archive first block, not a
    tar), from its first 512 bytes; None if it may hold samples. Training on nothing but
    such shards would spin forever waiting for a first sample."""
    import tarfile

    try:
        with open(url, "rb") as f:
            block = f.read(tarfile.BLOCKSIZE)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    if not block:
        return "0 bytes"
    if block.count(0) == len(block):
        return "an empty tar: no members"
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return "not a tar file"
    return None


def count_samples(url: str) -> int:
    """Samples in a shard: from the ``index.json`` beside it, else by reading tar headers."""
    path = Path(url)
    index = path.parent / "index.json"
    if index.exists():
        import json

        for shard in json.loads(index.read_text()).get("shards", []):
            if shard.get("name") == path.name:
                return int(shard["samples"])
    import tarfile

    keys = set()
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                keys.add(member.name.split(".", 1)[0])
    except (tarfile.TarError, OSError):
        pass  # a damaged shard counts what could be read; the pipeline skips the rest
    return len(keys)
