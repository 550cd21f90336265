"""Skip-and-count: a bad sample is dropped, counted by reason, and logged (rate-limited).

Each data-loading process has its own counter; the counts since the last batch ride
along in that batch (``Batch.skipped``) so the training loop can log totals across
workers without shared state.
"""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger("omnitrain.data")


class SkipCounter:
    def __init__(self, log_first: int = 5) -> None:
        self.total: Counter[str] = Counter()
        self.pending: Counter[str] = Counter()
        self.log_first = log_first

    def add(self, reason: str, where: str, error: BaseException | str) -> None:
        self.total[reason] += 1
        self.pending[reason] += 1
        n = self.total[reason]
        if n <= self.log_first or (n & (n - 1)) == 0:  # first few, then at powers of two
            log.warning("skipped %s (%s #%d): %s", where, reason, n, error)

    def drain(self) -> dict[str, int]:
        out = dict(self.pending)
        self.pending.clear()
        return out


SKIPS = SkipCounter()


def on_shard_error(exn: BaseException) -> bool:
    """webdataset handler for unreadable tar data: count it and keep going."""
    url = next((a for a in reversed(exn.args) if isinstance(a, str) and ".tar" in a), "a shard")
    SKIPS.add("shard_read_error", url, repr(exn.args[0]) if exn.args else repr(exn))
    return True
