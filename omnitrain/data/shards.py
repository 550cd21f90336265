"""Shard lists: expand brace/glob/directory specs and URLs, fail early when shards are missing."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import braceexpand

from omnitrain.data.shard_source import (
    ShardError,
    ShardSourceError,
    check_backend,
    is_url,
    local_path,
    supported_schemes,
    url_scheme,
)


def resolve_shards(spec: str | Sequence[str] | None, field: str) -> list[str]:
    """``data/demo/train-{000000..000003}.tar``, ``data/demo/*.tar``, a directory, a URL
    (``pipe:CMD``, ``https://``, ``s3://``; brace patterns expand there too), or a list.
    URLs are not opened here (every rank would open every shard at start); an fsspec URL
    only has its backend package checked, so a missing s3fs fails before any work."""
    if not spec:
        raise ShardError(f"{field} is empty: point it at .tar shards (a path, glob, brace pattern, "
                         "directory or URL)")
    specs = [spec] if isinstance(spec, str) else list(spec)
    found: list[str] = []
    missing: list[str] = []
    for s in specs:
        for item in braceexpand.braceexpand(str(s)):
            if url_scheme(item) not in (None, "file"):
                found.append(_checked_url(item, field))
                continue
            p = Path(_local(item, field)).expanduser()
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
    empty = [f"{u} ({why})" for u in found if not is_url(u) and (why := empty_reason(u))]
    if empty:
        raise ShardError(f"{field}: shard(s) with no samples: {listed(empty)}. Remove them from {field} "
                         "or pack them again (`omnitrain data pack`)")
    return found


def _local(item: str, field: str) -> str:
    try:
        return local_path(item) or item
    except ShardSourceError as exc:
        raise ShardSourceError(f"{field}: {exc}") from exc


def _checked_url(url: str, field: str) -> str:
    """``url`` if it is one ``open_shard`` reads; a clear error (unknown scheme, a glob,
    a missing fsspec backend) otherwise."""
    scheme = url_scheme(url)
    if not is_url(url):
        raise ShardSourceError(f"{field}: {url}: unknown URL scheme '{scheme}'; use {supported_schemes()}")
    if scheme != "pipe" and "*" in url:
        raise ShardSourceError(f"{field}: {url}: globs work only for local paths; list the shards "
                               "or use a brace pattern such as train-{000000..000009}.tar")
    if scheme not in ("pipe", "http", "https"):
        try:
            check_backend(url)
        except ShardSourceError as exc:
            raise ShardSourceError(f"{field}: {exc}") from exc
    return url


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
