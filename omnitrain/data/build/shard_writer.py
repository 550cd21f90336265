"""Write webdataset tar shards atomically, with a sizes/index file beside them.

A shard is written to ``NAME.tar.tmp`` and renamed when complete, so a crashed or
interrupted writer never leaves a half shard that looks finished. Members get fixed
mtimes and owners, so the same samples give byte-identical shards.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path


class ShardWriter:
    """Writes samples (dicts of member name -> bytes, plus ``__key__``) into one shard.
    ``measure`` (``sample_lengths.LengthMeter``): each sample's token count is recorded
    for the index, so token batching can plan epochs without reading the samples."""

    def __init__(self, path: Path, measure=None) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_suffix(".tar.tmp")
        self.tar = tarfile.open(self.tmp, "w")  # noqa: SIM115 -- closed in close(), which renames it into place
        self.samples = 0
        self.measure = measure
        self.lengths: list[int] = []

    def write(self, sample: dict) -> None:
        key = sample["__key__"]
        if "." in key or "/" in key:
            raise ValueError(f"sample key '{key}' must not contain '.' or '/'")
        for name, data in sample.items():
            if name.startswith("__"):
                continue
            info = tarfile.TarInfo(f"{key}.{name}")
            info.size, info.mtime, info.mode = len(data), 0, 0o444
            info.uname = info.gname = "omnitrain"
            self.tar.addfile(info, io.BytesIO(data))
        self.samples += 1
        if self.measure is not None:
            self.lengths.append(self.measure.of_sample({**sample, "__url__": str(self.path)}))

    @property
    def bytes(self) -> int:
        """Bytes written so far (tar headers included)."""
        return self.tar.offset

    def close(self) -> dict:
        self.tar.close()
        os.replace(self.tmp, self.path)
        entry = {"name": self.path.name, "samples": self.samples, "bytes": self.path.stat().st_size}
        if self.measure is not None:
            entry.update(lengths_key=self.measure.key, lengths=self.lengths)
        return entry

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.tar.close()
            self.tmp.unlink(missing_ok=True)


def write_index(directory: Path, shards: list[dict], extra: dict | None = None) -> Path:
    """``index.json``: per-shard sample counts and sizes (and token lengths, where measured)."""
    index = {"shards": shards, "samples": sum(s["samples"] for s in shards), **(extra or {})}
    path = Path(directory) / "index.json"
    path.write_text(index_text(index))
    return path


def index_text(index: dict) -> str:
    """JSON with one line per shard (a shard's lengths list stays on its line)."""
    shards = ",\n".join("    " + json.dumps(s) for s in index.get("shards", []))
    rest = {k: v for k, v in index.items() if k != "shards"}
    head = json.dumps(rest, indent=2)[:-2]
    return head + (",\n" if rest else "\n") + f'  "shards": [\n{shards}\n  ]\n}}\n'

