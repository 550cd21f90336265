"""Run folders and checkpoints live on a filesystem: a URL there is refused before any work.

``run_dir=s3://bucket/run1`` would otherwise become a local folder named ``s3:``, and the
checkpoints of every rank would land on its own disk, where no resume can find them.
"""

from __future__ import annotations

import re

from omegaconf import DictConfig

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_run_paths(cfg: DictConfig) -> list[str]:
    """Problems of ``run_dir`` and ``resume`` given as URLs (``s3://``, ``gs://``, ``https://``)."""
    problems = []
    for key in ("run_dir", "resume"):
        value = cfg.get(key)
        if isinstance(value, str) and _URL.match(value):
            problems.append(
                f"{key}={value}: a URL cannot hold checkpoints; they need a shared filesystem. Use a "
                "local or network-mounted path (e.g. a FUSE mount of the bucket: mountpoint-s3, "
                "s3fs-fuse, gcsfuse) and give that path")
    return problems
