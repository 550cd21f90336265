"""The conversation turns training accepts, checked in one place: at pack time
(``omnitrain data pack`` skips the line, ``PackError``) and at training time
(``SampleBuilder`` skips the sample, ``SampleError``), with the same words."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnitrain.tokens import ROLES

MEDIA = ("audio", "image", "video")
SPOKEN = ("speech", "codec", "reference")  # what only an assistant turn may carry


def turn_problem(turn: Any, t: int) -> str | None:
    """What is wrong with ``turns[t]``, as a message naming it, or None: a role from
    ``ROLES``, a system turn only first and text-only, spoken fields only on assistant
    turns, content a list of parts with exactly one of text/audio/image/video each."""
    if not isinstance(turn, Mapping):
        return f"turns[{t}] must be an object with 'role' and 'content'"
    role = turn.get("role")
    if role not in ROLES:
        return f"turns[{t}].role must be one of {list(ROLES)}, got {role!r}"
    content = turn.get("content", [])
    if not isinstance(content, list) or not all(isinstance(p, Mapping) for p in content):
        return f"turns[{t}].content must be a list of parts (objects)"
    if role == "system":
        if t > 0:
            return f"turns[{t}] is a system turn; only the first turn may be one"
        if any(set(p) != {"text"} for p in content):
            return "the system turn may only hold text parts"
    for key in SPOKEN:
        if key in turn and role != "assistant":
            return f"turns[{t}] has '{key}' but only assistant turns speak"
    for p, part in enumerate(content):
        kinds = [k for k in ("text", *MEDIA) if k in part]
        if len(kinds) != 1:
            return f"turns[{t}].content[{p}] needs exactly one of text/audio/image/video, got {sorted(part)}"
        if kinds[0] == "text" and not isinstance(part["text"], str):
            return f"turns[{t}].content[{p}].text must be a string"
    return None
