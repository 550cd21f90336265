"""How many samples each shard holds (and, for token batching, how long each is), from
wherever that is known, without every rank re-reading every shard at start.

Sources, first found wins, per shard:
1. ``data.index``: an ``index.json`` (path or URL) whose entries name shards by ``url`` or
   by ``name`` relative to the index's folder;
2. the ``index.json`` beside the shard (``data pack`` and ``data demo`` write one), also
   beside URL shards that have a folder;
3. the user's cache (``~/.cache/omnitrain/shards``, or ``$OMNITRAIN_CACHE``), keyed by the
   shard's URL and its size/mtime (or ETag), filled the first time a shard is counted;
4. counting: the shards left are split over the ranks, each rank reads its part's tar
   headers, and the counts are shared and cached.

Lengths (Thinker tokens per sample, for ``data.batching=tokens``) come the same way,
valid only for the config they were measured with (``sample_lengths.lengths_key``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from omnitrain.data.shard_source import beside, read_bytes, shard_signature

log = logging.getLogger("omnitrain.data")


@dataclass(frozen=True)
class ShardIndex:
    """The shards of a split in config order, with their sample counts; a sample's global
    id is its shard's offset plus its ordinal in the shard."""

    urls: tuple[str, ...]
    counts: tuple[int, ...]
    lengths: np.ndarray | None = None  # (total,) Thinker tokens per global id; 0: unusable

    @property
    def total(self) -> int:
        return int(sum(self.counts))

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int64)

    def digest(self) -> str:
        """Changes when the shard list, a count or a length changes: a saved stream
        position is only meaningful for the same data and plan."""
        digest = hashlib.sha256(json.dumps([self.urls, self.counts]).encode())
        if self.lengths is not None:
            digest.update(np.ascontiguousarray(self.lengths, dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]


# ---- the cache -------------------------------------------------------------------------
def cache_dir() -> Path:
    root = os.environ.get("OMNITRAIN_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "omnitrain"
    return Path(root).expanduser() / "shards"


def _cache_file(url: str) -> Path:
    where = url if "://" in url or url.startswith("pipe:") else str(Path(url).expanduser().resolve())
    return cache_dir() / (hashlib.sha256(where.encode()).hexdigest()[:32] + ".json")


def _cached(url: str) -> dict:
    """The cache entry of ``url`` if it was made for the shard as it is now, else {}."""
    path = _cache_file(url)
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entry if entry.get("signature") == shard_signature(url) else {}


def _store(url: str, **fields) -> None:
    """Adds ``fields`` to the cache entry of ``url`` (written beside and renamed)."""
    path = _cache_file(url)
    try:
        entry = {**_cached(url), "url": url, "signature": shard_signature(url)}
        for name, value in fields.items():
            entry[name] = {**entry.get(name, {}), **value} if isinstance(value, dict) else value
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home: counted again next time, said once
        log.warning("could not cache the sample count of %s in %s (%s)", url, path, exc)


# ---- index files -----------------------------------------------------------------------
def _read_index(where: str) -> dict | None:
    """An ``index.json`` at a path or URL; None if there is none (or it is not JSON)."""
    try:
        return json.loads(read_bytes(where))
    except (OSError, ValueError):
        return None


def _entries(index: dict, where: str) -> dict[str, dict]:
    """``index.json`` entries by the URL of the shard they name."""
    folder = where.rsplit("/", 1)[0] if "/" in where else "."
    out = {}
    for entry in index.get("shards", []):
        if entry.get("url"):
            out[_normal(entry["url"])] = entry
        elif entry.get("name"):
            out[_normal(f"{folder}/{entry['name']}")] = entry
    return out


def _normal(url: str) -> str:
    if url.startswith("file://"):
        url = url[len("file://"):]
    if "://" in url or url.startswith("pipe:"):
        return url
    return os.path.abspath(os.path.expanduser(url))


# ---- putting it together ---------------------------------------------------------------
def load_index(urls: Sequence[str], index: str | None = None, lengths_key: str | None = None,
               measure: Callable[[str], list[int]] | None = None) -> ShardIndex:
    """Counts (and, with ``lengths_key`` and ``measure``, lengths) of ``urls``."""
    known: dict[str, dict] = {}
    if index:
        found = _read_index(index)
        if found is None:
            raise FileNotFoundError(f"data.index={index}: no readable index.json there (a path or URL "
                                    "of a file listing shards with their 'samples')")
        known.update(_entries(found, index))
    for where in dict.fromkeys(u for u in (beside(url, "index.json") for url in urls) if u):
        for url, entry in _entries(_read_index(where) or {}, where).items():
            known.setdefault(url, entry)
    counts: dict[str, int] = {}
    lengths_of: dict[str, list[int]] = {}
    for url in urls:
        entry = known.get(_normal(url), {})
        has_lengths = entry.get("lengths_key") == lengths_key and entry.get("lengths") is not None
        cached = _cached(url) if "samples" not in entry or (lengths_key and not has_lengths) else {}
        if "samples" in entry or "samples" in cached:
            counts[url] = int(entry.get("samples", cached.get("samples")))
        if lengths_key:
            found = entry["lengths"] if has_lengths else cached.get("lengths", {}).get(lengths_key)
            if found is not None and len(found) == counts.get(url):
                lengths_of[url] = found
    missing = agreed(urls, [u for u in urls if u not in counts])
    if missing:
        from omnitrain.data.tar_samples import count_samples

        log.warning("counting the samples of %d shard(s) without an index (once; cached in %s)",
                    len(missing), cache_dir())
        for url, n in shared_work(missing, count_samples).items():
            counts[url] = n
            _store(url, samples=n)
    found_index = ShardIndex(tuple(urls), tuple(counts[u] for u in urls))
    if not lengths_key:
        return found_index
    unmeasured = agreed(urls, [u for u in urls if u not in lengths_of])
    if unmeasured:
        if measure is None:
            raise ValueError(f"no sample lengths for {unmeasured[:3]}")
        log.warning("measuring the length of every sample of %d shard(s) for data.batching=tokens "
                    "(once per tokenizer/encoder config; cached in %s)", len(unmeasured), cache_dir())
        for url, lengths in shared_work(unmeasured, measure).items():
            # a damaged shard: the samples that could be read, the rest unusable (0)
            lengths_of[url] = (list(lengths) + [0] * counts[url])[: counts[url]]
            _store(url, lengths={lengths_key: lengths_of[url]})
    lengths = np.concatenate([np.asarray(lengths_of[u], dtype=np.int64) for u in urls] + [np.zeros(0, np.int64)])
    return ShardIndex(found_index.urls, found_index.counts, lengths)


def agreed(urls: Sequence[str], mine: list[str]) -> list[str]:
    """The shards any rank lacks (in ``urls`` order): every rank must join ``shared_work``
    or none, though caches differ between nodes (one small gather, every rank)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return mine
    gathered: list[list[str] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    lacking = {u for part in gathered if part for u in part}
    return [u for u in urls if u in lacking]


def shared_work(items: list[str], fn: Callable[[str], object]) -> dict[str, object]:
    """``fn`` of every item, the items split over the ranks (each rank does its part, the
    results are shared); one process: all of them here."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return {item: fn(item) for item in _progress(items)}
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = {item: fn(item) for item in _progress(items[rank::world])}
    gathered: list[dict | None] = [None] * world
    dist.all_gather_object(gathered, mine)
    return {k: v for part in gathered if part for k, v in part.items()}


def _progress(items: list[str]):
    if len(items) < 4:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="indexing shards", unit="shard")
