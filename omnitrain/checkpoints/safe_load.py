"""Reading checkpoint files as data, never as code.

``torch.load(weights_only=True)`` accepts tensors and plain containers only; a strategy
names the few extra types its files hold (DeepSpeed's loss scaler, ZeRO stage enum).
Anything else, such as an object whose unpickling would call a function, is refused,
so a checkpoint from someone else cannot run code on ``export`` or ``resume``. A file
that is cut short is reported as corrupt or truncated, not as a zipfile traceback.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from omnitrain.checkpoints.base import CheckpointError


def load_file(path: Path | str, allowed: Iterable[type] = (), mmap: bool = True) -> Any:
    """``torch.load`` of ``path`` as data (tensors, containers, ``allowed`` types)."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(list(allowed)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"'{path}' holds objects other than tensors and plain data ({_first_line(exc)}); omnitrain "
            "does not load it, since unpickling them could run code planted in the file"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"'{path}' is corrupt or truncated ({_first_line(exc)})") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class RestrictedUnpickler(pickle.Unpickler):
    """A pickle reader that builds only the classes it is given (module, name) pairs for."""

    def __init__(self, file, allowed: set[tuple[str, str]], what: Path) -> None:
        super().__init__(file)
        self.allowed, self.what = allowed, what

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.allowed or (module, "*") in self.allowed:
            return super().find_class(module, name)
        raise CheckpointError(f"'{self.what}' holds a {module}.{name}, which omnitrain does not load "
                              "(unpickling it could run code planted in the file)")


def load_pickle(path: Path, allowed: set[tuple[str, str]]) -> Any:
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, allowed, path).load()
    except CheckpointError:
        raise
    except (EOFError, pickle.UnpicklingError, OSError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"'{path}' is corrupt or truncated ({_first_line(exc)})") from exc
