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
    """Writes samples (dicts of member name -> bytes, plus ``__key__``) into one shard."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_suffix(".tar.tmp")
        self.tar = tarfile.open(self.tmp, "w")  # noqa: SIM115 -- closed in close(), which renames it into place
        self.samples = 0

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

    @property
    def bytes(self) -> int:
        """Bytes written so far (tar headers included)."""
        return self.tar.offset

    def close(self) -> dict:
        self.tar.close()
        os.replace(self.tmp, self.path)
        return {"name": self.path.name, "samples": self.samples, "bytes": self.path.stat().st_size}

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.close()
        else:
            self.tar.close()
            self.tmp.unlink(missing_ok=True)


def write_index(directory: Path, shards: list[dict], extra: dict | None = None) -> Path:
    """``index.json``: per-shard sample counts and sizes, grouped by split prefix."""
    index = {"shards": shards, "samples": sum(s["samples"] for s in shards), **(extra or {})}
    path = Path(directory) / "index.json"
    path.write_text(json.dumps(index, indent=2))
    return path
