"""Rows of a Hugging Face dataset on disk, read with ``pyarrow`` (no ``datasets`` needed):
a ``datasets.save_to_disk`` folder (``*.arrow``, Arrow IPC streams) or parquet files.

Media a dataset stores inside itself (``Image``/``Audio`` features: ``{"bytes", "path"}``)
are written as files under ``media_dir`` so the manifest can name them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from omnitrain.data.build.convert_base import MEDIA_LISTS, ConvertError, Record, Unmappable

INSTALL = "pip install pyarrow (or: pip install 'omnitrain[hf]')"


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise ConvertError(f"--from hf reads Arrow and parquet files with pyarrow, which is not installed: "
                           f"{INSTALL}") from exc
    return pyarrow


def _tables(src: Path):
    pa = _pyarrow()
    if src.is_file():
        files = [src]
    else:
        files = sorted(src.glob("*.arrow")) or sorted(src.rglob("*.parquet")) or sorted(src.rglob("*.arrow"))
    if not files:
        raise ConvertError(f"'{src}' holds no *.arrow (datasets.save_to_disk) or *.parquet files; for a "
                           "DatasetDict pass one split's folder, e.g. DIR/train")
    for file in files:
        if file.suffix == ".parquet":
            yield file, pa.parquet.read_table(file)
        elif file.suffix == ".arrow":
            with pa.memory_map(str(file)) as source:
                try:
                    table = pa.ipc.open_stream(source).read_all()
                except pa.ArrowInvalid:  # the file (random access) layout
                    table = pa.ipc.open_file(source).read_all()
            yield file, table
        else:
            raise ConvertError(f"'{file}': --from hf reads .arrow or .parquet files")


def read_hf_records(src: Path, media_dir: Path) -> Iterator[Record | Unmappable]:
    number = 0
    for file, table in _tables(Path(src)):
        for row in table.to_pylist():
            number += 1
            try:
                yield Record(_stored_media(row, media_dir, number), file.parent)
            except Unmappable as exc:
                yield exc


def _stored_media(row: dict, media_dir: Path, number: int) -> dict:
    """Media stored as bytes -> files under media_dir; the row names their paths."""
    row = dict(row)
    for kind, keys in MEDIA_LISTS.items():
        for key in keys:
            value = row.get(key)
            if value is None:
                continue
            entries = value if isinstance(value, list) else [value]
            paths = [_write(e, media_dir, f"r{number:07d}_{kind}{j}") for j, e in enumerate(entries)]
            row[key] = paths if isinstance(value, list) else paths[0]
    return row


def _write(entry, media_dir: Path, stem: str):
    if not isinstance(entry, dict) or not entry.get("bytes"):
        return entry  # a path (or a {"path"} dict resolved later)
    suffix = Path(entry.get("path") or "").suffix or _sniff(entry["bytes"])
    media_dir.mkdir(parents=True, exist_ok=True)
    path = media_dir / f"{stem}{suffix}"
    path.write_bytes(entry["bytes"])
    return str(path.resolve())


def _sniff(data: bytes) -> str:
    """A file suffix from the first bytes, for media stored without a name."""
    signatures = {b"\x89PNG": ".png", b"\xff\xd8\xff": ".jpg", b"RIFF": ".wav", b"fLaC": ".flac",
                  b"OggS": ".ogg", b"GIF8": ".gif", b"ID3": ".mp3"}
    for magic, suffix in signatures.items():
        if data.startswith(magic):
            return ".webp" if magic == b"RIFF" and data[8:12] == b"WEBP" else suffix
    if data[4:8] == b"ftyp":
        return ".mp4"
    return ".bin"
