"""What the ``data convert`` readers share: a source record, the errors, the media keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omnitrain.data.build.pack import PackError

MEDIA_LISTS = {"image": ("images", "image"), "audio": ("audios", "audio"), "video": ("videos", "video")}

class ConvertError(PackError):
    """A source that cannot be converted at all; the message says what to do."""


class Unmappable(ValueError):
    """One record that has no omnitrain conversation; the message is its reason."""


@dataclass
class Record:
    """One source record, with the folder its relative media paths are relative to."""

    data: dict
    base: Path
