"""'Did you mean' for a mistyped name."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def suggest(key: str, options: Iterable[str], prefix: str = "") -> str:
    """`` (did you mean 'PREFIX<closest option>'?)``, or "" when nothing is close; the
    prefix makes it the full dotted key the user can paste."""
    match = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean '{prefix}{match[0]}'?)" if match else ""
