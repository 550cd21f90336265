"""File digests, read in 1 MiB chunks so a multi-GiB checkpoint never sits in memory.

``sha256_cached`` remembers a file's digest beside its size, modification time and inode
(``$OMNITRAIN_CACHE_DIR``, default ``~/.cache/omnitrain``), as git's index does: a 15 GB
bundle is hashed once, not at every load; a file rewritten since is hashed again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_file() -> Path:
    root = os.environ.get("OMNITRAIN_CACHE_DIR") or Path.home() / ".cache" / "omnitrain"
    return Path(root) / "sha256.json"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def sha256_cached(paths: list[Path]) -> dict[Path, str]:
    """Each file's sha256, read from the cache where the file is unchanged since it was
    hashed; the cache is updated (a cache that cannot be written only costs the hashing)."""
    store = cache_file()
    try:
        known = json.loads(store.read_text())
    except (OSError, ValueError):
        known = {}
    out: dict[Path, str] = {}
    changed = False
    for path in paths:
        key, stamp = str(Path(path).resolve()), _stamp(path)
        hit = known.get(key)
        if hit and hit[0] == stamp:
            out[path] = hit[1]
            continue
        out[path] = sha256_file(path)
        known[key] = [stamp, out[path]]
        changed = True
    if changed:
        try:
            store.parent.mkdir(parents=True, exist_ok=True)
            tmp = store.with_name(f"{store.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(known))
            tmp.replace(store)
        except OSError:
            pass
    return out
