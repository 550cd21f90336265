"""Samples of one tar shard by position, reading only what is asked for.

A shard is a tar of members ``<key>.<suffix>``; consecutive members with the same key
form one sample (webdataset's rule), and a sample's *ordinal* is its place in the shard.
The training stream asks for samples by ordinal: a worker whose share starts in the
middle of a shard skips the members before it without reading their data where the
shard is a seekable file (tar headers only), and reads through them on a stream
(``pipe:``, ``http://``, object storage).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator

from webdataset.tariterators import base_plus_ext

from omnitrain.data.shard_source import open_shard
from omnitrain.data.skips import SKIPS


def read_shard(url: str, start: int = 0, stop: int | None = None, data: bool = True) -> Iterator[tuple[int, dict]]:
    """``(ordinal, sample)`` for the samples ``start <= ordinal < stop`` of ``url`` in file
    order; a sample is ``{"__key__", "__url__", suffix: bytes, ...}`` (suffixes lower-case).
    ``data=False`` yields the samples without their members (counting). An unreadable
    or truncated shard ends early: the error is counted (``shard_read_error``), never raised."""
    ordinal, key, sample = -1, None, None
    try:
        with open_shard(url) as raw:
            mode = "r:" if _seekable(raw) else "r|"
            with tarfile.open(fileobj=raw, mode=mode) as tar:
                for info in tar:
                    tar.members = []  # a big shard's headers would otherwise pile up
                    if not info.isreg():
                        continue
                    prefix, suffix = base_plus_ext(info.name)
                    if prefix is None or prefix.startswith("__"):
                        continue
                    if prefix != key:
                        if sample is not None:
                            yield ordinal, sample
                            sample = None
                        ordinal, key = ordinal + 1, prefix
                        if stop is not None and ordinal >= stop:
                            return
                        if ordinal >= start:
                            sample = {"__key__": prefix, "__url__": url}
                    if sample is None:
                        continue
                    suffix = suffix.lower()
                    if suffix in sample:
                        sample["__error__"] = f"member '{info.name}' appears twice"
                    if data:
                        sample[suffix] = tar.extractfile(info).read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        SKIPS.add("shard_read_error", url, repr(exc))
        sample = None  # its members may be cut short
    if sample is not None:
        yield ordinal, sample


def count_samples(url: str) -> int:
    """Samples in a shard, by reading its tar headers (the data is skipped or read through)."""
    n = 0
    for ordinal, _ in read_shard(url, data=False):
        n = ordinal + 1
    return n


def _seekable(stream) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False
