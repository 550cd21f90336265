"""Allowed values of a config field, declared where the field is: ``bounded(16, ge=1)``
or ``one_of("cosine", "cosine", "constant")`` in place of a plain default. Config
validation reads them (``problems_of``) and names the key and its allowed range."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None) -> Any:
    """A numeric field's default and bounds (None = unbounded; a None value always passes)."""
    return dataclasses.field(default=default, metadata={"range": (ge, gt, le, lt)})


def one_of(default: str, *choices: str) -> Any:
    """An enum-like string field: its default and the values it may take."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices)})


def describe(field: dataclasses.Field) -> str | None:
    if "choices" in field.metadata:
        return f"one of {list(field.metadata['choices'])}"
    if "range" in field.metadata:
        ge, gt, le, lt = field.metadata["range"]
        parts = [p for p in (ge is not None and f">= {ge}", gt is not None and f"> {gt}",
                             le is not None and f"<= {le}", lt is not None and f"< {lt}") if p]
        return "a number " + " and ".join(parts)
    return None


def problem(field: dataclasses.Field, value: Any, key: str) -> str | None:
    """A message naming ``key`` and its allowed values if ``value`` is outside them."""
    if value is None:
        return None
    if "choices" in field.metadata:
        return None if value in field.metadata["choices"] else f"{key}={value!r}: must be {describe(field)}"
    if "range" not in field.metadata:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or (isinstance(value, float) and math.isnan(value)):
        return f"{key}={value!r}: must be {describe(field)}"
    ge, gt, le, lt = field.metadata["range"]
    bad = ((ge is not None and value < ge) or (gt is not None and value <= gt)
           or (le is not None and value > le) or (lt is not None and value >= lt))
    return f"{key}={value!r}: must be {describe(field)}" if bad else None


def problems_of(schema: type, values: Any, prefix: str) -> list[str]:
    """Every field of ``values`` (a mapping) outside its declared range, nested sections too."""
    out: list[str] = []
    for f in dataclasses.fields(schema):
        if f.name not in values:
            continue
        value = values[f.name]
        factory = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if factory is not None and dataclasses.is_dataclass(factory) and hasattr(value, "keys"):
            out += problems_of(factory, value, f"{prefix}.{f.name}")
            continue
        message = problem(f, value, f"{prefix}.{f.name}")
        if message:
            out.append(message)
    return out
