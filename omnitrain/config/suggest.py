"""'Did you mean' for a mistyped name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(key: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""
