"""``omnitrain data encode IN OUT --codec SPEC``: shards built with one codec, re-encoded with
another, without going back to the manifest.

Every shard of IN (a folder: its ``*.tar``; or a glob / brace pattern / list, as
``data.train_shards`` takes) becomes a shard of the same name in OUT whose members are
IN's, byte for byte and in the same order, except the codes of each spoken turn: an
assistant turn of the sample's ``json`` with ``"speech"`` and ``"codec"`` gets its
``codec`` member made anew from its ``speech`` member by the new codec (int32 ``.npy``,
(n,) or (n, groups)), the speech resampled to the codec's rate where it differs.

A sample that cannot be read (a tar member cut short, a bad ``json``, speech that does
not decode or that the codec cannot encode) is left out, counted and listed in
``OUT/skipped.jsonl`` with its shard, key and reason; a shard that cannot be read past
some point is listed there too. A shard left with no sample is not written (training
refuses empty shards).

``OUT/index.json`` has each shard's sample count and size, and the samples' token lengths
copied from IN's ``index.json`` (a sample's Thinker tokens do not depend on the codec) or,
where IN has none, measured. IN's ``heldout/`` (prompts as plain files for ``generate`` and
``eval``: no codes in them) is copied when every shard of IN comes from one folder that
has one. IN is only read.
"""

from __future__ import annotations

import copy
import io
import json
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from webdataset.tariterators import base_plus_ext

from omnitrain.data.build.shard_writer import write_index
from omnitrain.data.media import MediaError, load_audio, why
from omnitrain.slots import Codec

OUTPUTS = ("index.json", "skipped.jsonl", "heldout")  # what encode writes beside the shards


class EncodeError(ValueError):
    """IN or OUT cannot be used as given (or the codec cannot encode); the message says why."""


class _Skip(Exception):
    """A sample that cannot be read or encoded: it is left out and listed."""


@dataclass
class _Sample:
    key: str | None  # None: members that belong to no sample (folders, ``__`` names): copied
    members: list[tuple[tarfile.TarInfo, bytes | None]] = field(default_factory=list)
    error: str | None = None  # why the shard could not be read past this sample


@dataclass
class EncodeResult:
    shards: list[dict]  # index entries of the shards written
    written: int
    skipped: list[dict]  # {"shard", "key", "reason"}; key None: a shard read only in part ("lost": samples)
    skipped_path: Path
    heldout: Path | None  # OUT/heldout when copied


def input_shards(spec: str | list[str]) -> list[Path]:
    """IN's shards: a folder's ``*.tar``, a glob, a brace pattern or a list; local files only."""
    from omnitrain.data.shard_source import is_url
    from omnitrain.data.shards import ShardError, resolve_shards

    specs = [spec] if isinstance(spec, str) else list(spec)
    urls = [s for s in specs if is_url(s)]
    if urls:
        raise EncodeError(f"IN {urls[0]}: data encode reads local shards; copy them here first")
    try:
        found = resolve_shards(specs, "IN")
    except ShardError as exc:  # empty shards included: they hold nothing to encode
        raise EncodeError(str(exc)) from exc
    paths = [Path(p) for p in dict.fromkeys(found)]
    names: dict[str, Path] = {}
    for p in paths:
        if p.name in names:
            raise EncodeError(f"IN has two shards named {p.name} ({names[p.name]} and {p}); OUT keeps the names, "
                              "so encode them into separate folders")
        names[p.name] = p
    return paths


def check_out(shards: list[Path], out: Path, overwrite: bool = False) -> None:
    """Refuses an OUT that would overwrite IN (its folder, or a shard of it under the same
    name), and a non-empty OUT without ``overwrite``."""
    resolved = Path(out).resolve()
    if resolved.exists() and not resolved.is_dir():
        raise EncodeError(f"OUT {out} is a file; give a folder")
    if resolved in {Path(s).resolve().parent for s in shards}:
        raise EncodeError(f"OUT {out} is the folder of IN's shards: encoding there would overwrite them "
                          "(and their index.json); give a new folder")
    inputs = {Path(s).resolve() for s in shards}
    clash = [n for n in (Path(out) / Path(s).name for s in shards) if n.resolve() in inputs]
    if clash:
        raise EncodeError(f"OUT {out}: {clash[0]} is one of IN's shards; give a new folder")
    if resolved.is_dir() and any(resolved.iterdir()) and not overwrite:
        raise EncodeError(f"OUT {out} is not empty; give a new folder, or --overwrite to replace its "
                          f"shards, {', '.join(OUTPUTS)}")


class Encoder:
    """Re-encodes ``shards`` into ``out`` with ``codec``. ``measure``
    (``sample_lengths.LengthMeter``): measures the lengths of samples IN's index has none for.
    ``codec_config``: the codec's settings, recorded in OUT's index.json."""

    def __init__(self, shards: list[Path], out: Path, codec: Codec, overwrite: bool = False, measure=None,
                 codec_config: dict | None = None) -> None:
        self.shards, self.out, self.codec, self.measure = [Path(s) for s in shards], Path(out), codec, measure
        self.overwrite, self.codec_config = overwrite, codec_config
        self.skipped_path = self.out / "skipped.jsonl"
        self._indexes: dict[Path, dict] = {}
        check_out(self.shards, self.out, overwrite)

    # ---- IN's size ---------------------------------------------------------------

    def total(self) -> int:
        """Samples in IN (from its index.json, else by reading the tar headers): the progress bar's length."""
        from omnitrain.data.tar_samples import count_samples

        return sum(e["samples"] if (e := self._in_entry(s)) and "samples" in e else count_samples(str(s))
                   for s in self.shards)

    # ---- the run ---------------------------------------------------------------
    def run(self, progress: Callable[[int], None] | None = None) -> EncodeResult:
        self.out.mkdir(parents=True, exist_ok=True)
        if self.overwrite:
            self._clear()
        shards: list[dict] = []
        skipped: list[dict] = []
        for path in self.shards:
            entry = self._encode_shard(path, skipped, progress)
            if entry is not None:
                shards.append(entry)
        self.skipped_path.write_text("".join(json.dumps(s) + "\n" for s in skipped))
        if not shards:
            raise EncodeError(f"no sample of IN could be encoded: all {len(skipped)} were skipped; the reasons "
                              f"are in {self.skipped_path}")
        heldout = self._copy_heldout()
        write_index(self.out, shards, self._index_extra())
        return EncodeResult(shards, sum(s["samples"] for s in shards), skipped, self.skipped_path, heldout)

    @staticmethod
    def summary(result: EncodeResult) -> str:
        """"skipped N" (samples listed by key), and what cut-off shards lost beyond them."""
        listed = sum(s["key"] is not None for s in result.skipped)
        cut = [s for s in result.skipped if s["key"] is None]
        if not cut:
            return f"skipped {listed}"
        lost = sum(s.get("lost") or 0 for s in cut)
        return (f"skipped {listed}, and {lost or 'an unknown number of'} more in {len(cut)} shard(s) that could "
                "be read only in part")

    def _clear(self) -> None:
        """--overwrite: OUT's shards and what encode writes beside them go (a stale shard
        left there would be read with the new ones)."""
        for p in [*self.out.glob("*.tar"), *self.out.glob("*.tar.tmp")]:
            p.unlink()
        for name in OUTPUTS:
            p = self.out / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()

    def _encode_shard(self, src: Path, skipped: list[dict], progress) -> dict | None:
        dst = self.out / src.name
        tmp = dst.with_name(dst.name + ".tmp")
        copied = self._in_lengths(src)  # IN's (lengths_key, lengths), else measured here
        measure = self.measure if copied is None else None
        kept: list[int] = []  # ordinals in IN of the samples written
        measured: list[int] = []
        read, cut = 0, False

        def skip(key: str | None, reason: str) -> None:
            skipped.append({"shard": src.name, "key": key, "reason": reason})

        try:
            with tarfile.open(tmp, "w") as tar:
                for sample in _read_samples(src):
                    if sample.key is None and sample.error:  # cut off between two samples
                        cut = True
                        skip(None, f"the shard cannot be read after its sample {read} ({sample.error}); "
                                   "any samples after that are lost")
                        continue
                    if sample.key is None:  # no sample's: copied where it stood
                        _copy_members(tar, sample.members, {})
                        continue
                    read += 1
                    try:
                        if sample.error:
                            cut = True
                            raise _Skip(f"the shard cannot be read past this sample's members ({sample.error}); "
                                        "any samples after it are lost too")
                        members = _by_suffix(sample)
                        codes = self.reencode(members, sample.key)
                    except _Skip as exc:
                        skip(sample.key, str(exc))
                    else:
                        _copy_members(tar, sample.members, codes, sample.key)
                        kept.append(read - 1)
                        if measure is not None:
                            measured.append(measure.of_sample(
                                {"__key__": sample.key, "__url__": str(src), **members, **codes}))
                    if progress:
                        progress(1)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        counted = (self._in_entry(src) or {}).get("samples")
        if isinstance(counted, int) and counted > read:  # samples never reached: no key to list them by
            skipped.append({"shard": src.name, "key": None, "lost": counted - read,
                            "reason": f"IN's index.json counts {counted} samples in this shard but {read} could "
                                      f"be read{': the shard is cut short' if cut else ''}"})
        if not kept:  # training refuses a shard with no samples
            tmp.unlink()
            return None
        os.replace(tmp, dst)
        entry = {"name": dst.name, "samples": len(kept), "bytes": dst.stat().st_size}
        if copied is not None and len(copied[1]) >= read:
            entry.update(lengths_key=copied[0], lengths=[copied[1][i] for i in kept])
        elif measure is not None:
            entry.update(lengths_key=measure.key, lengths=measured)
        return entry

    def reencode(self, members: dict[str, bytes], key: str) -> dict[str, bytes]:
        """The new codec members of one sample (suffix -> .npy bytes); raises ``_Skip``."""
        if "json" not in members:
            raise _Skip("no 'json' member (the conversation)")
        try:
            conv = json.loads(members["json"])
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Skip(f"the json member is not valid JSON ({why(exc, members['json'])})") from exc
        turns = conv.get("turns") if isinstance(conv, dict) else None
        if not isinstance(turns, list):
            raise _Skip("the json member has no 'turns' list")
        codes: dict[str, bytes] = {}
        made_from: dict[str, str] = {}
        for t, turn in enumerate(turns):
            if not (isinstance(turn, dict) and turn.get("role") == "assistant" and "speech" in turn
                    and "codec" in turn):
                continue
            speech, target = turn["speech"], turn["codec"]
            if not (isinstance(speech, str) and isinstance(target, str)):
                raise _Skip(f"turns[{t}]: 'speech' and 'codec' must name members")
            if speech not in members:
                raise _Skip(f"turns[{t}]: speech member '{speech}' is missing")
            if made_from.setdefault(target, speech) != speech:
                raise _Skip(f"turns[{t}]: codec member '{target}' is also the codes of '{made_from[target]}'")
            codes[target] = self._codes(members[speech], f"turns[{t}] speech '{speech}'")
        return codes

    def _codes(self, data: bytes, what: str) -> bytes:
        try:
            wave = load_audio(data, self.codec.sample_rate, what)
        except MediaError as exc:
            raise _Skip(str(exc)) from exc
        except Exception as exc:  # a decoder failing on odd bytes
            raise _Skip(f"{what}: {why(exc, data)}") from exc
        try:
            codes = self.codec.encode(wave)
        except NotImplementedError as exc:  # the codec, not the sample: no sample would encode
            raise EncodeError(f"the codec cannot encode: {exc}") from exc
        except Exception as exc:
            raise _Skip(f"{what}: the codec failed ({type(exc).__name__}: {exc})") from exc
        codes = torch.as_tensor(codes).cpu().numpy()
        groups = int(self.codec.groups)
        want = (1,) if groups == 1 else (2,)
        if codes.ndim not in want or (groups > 1 and codes.shape[1] != groups) or codes.dtype.kind not in "iu":
            raise EncodeError(f"the codec gave codes of shape {codes.shape} and dtype {codes.dtype}; a codec of "
                              f"{groups} group(s) must give integers of shape {'(n,)' if groups == 1 else f'(n, {groups})'}")
        if codes.shape[0] == 0:
            raise _Skip(f"{what}: shorter than one codec frame (no codes)")
        buf = io.BytesIO()
        np.save(buf, codes.astype(np.int32))
        return buf.getvalue()

    # ---- IN's index and held-out prompts ------------------------------------------
    def _in_index(self, shard: Path) -> dict:
        folder = shard.parent
        if folder not in self._indexes:
            path = folder / "index.json"
            try:
                self._indexes[folder] = json.loads(path.read_text()) if path.is_file() else {}
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                self._indexes[folder] = {}  # a broken index: counts and lengths are taken anew
        return self._indexes[folder]

    def _in_entry(self, shard: Path) -> dict | None:
        entries = self._in_index(shard).get("shards")
        return next((e for e in entries if isinstance(e, dict) and e.get("name") == shard.name), None) \
            if isinstance(entries, list) else None

    def _in_lengths(self, shard: Path) -> tuple[str, list[int]] | None:
        """IN's (lengths_key, lengths) of ``shard``, where its index.json has them."""
        entry = self._in_entry(shard) or {}
        lengths, key = entry.get("lengths"), entry.get("lengths_key")
        if isinstance(lengths, list) and key and entry.get("samples") == len(lengths):
            return key, lengths
        return None

    def _source_folder(self) -> Path | None:
        folders = {s.parent.resolve() for s in self.shards}
        return folders.pop() if len(folders) == 1 else None

    def _copy_heldout(self) -> Path | None:
        folder = self._source_folder()
        if folder is None or not (folder / "heldout").is_dir():
            return None
        shutil.copytree(folder / "heldout", self.out / "heldout", dirs_exist_ok=True)
        return self.out / "heldout"

    def _index_extra(self) -> dict:
        folder = self._source_folder()
        extra = {k: v for k, v in self._in_index(self.shards[0]).items() if k not in ("shards", "samples")} \
            if folder is not None else {}
        codec = self.codec_config or {"name": type(self.codec).__name__}
        return {**extra, "encoded": {"from": [str(s.resolve()) for s in self.shards], "codec": codec}}


# ---- tar reading and writing -------------------------------------------------------
def _read_samples(path: Path) -> Iterator[_Sample]:
    """The shard's members in order, grouped as webdataset groups them (consecutive members
    of one key); a member that belongs to no sample comes alone with key None. A shard that
    cannot be read on: the sample being read comes with ``error``, or, cut off between two
    samples, a last ``_Sample(None, error=...)``."""
    current: _Sample | None = None
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                tar.members = []  # a big shard's headers would otherwise pile up
                prefix = base_plus_ext(info.name)[0] if info.isreg() else None
                if prefix is None or prefix.startswith("__"):
                    yield _Sample(None, [(info, tar.extractfile(info).read() if info.isreg() else None)])
                    continue
                if current is not None and current.key != prefix:
                    yield current
                    current = None
                if current is None:
                    current = _Sample(prefix)
                current.members.append((info, tar.extractfile(info).read()))
            where = _unread_data(tar)
            if where is not None:  # tarfile ends quietly at a bad header that is not the first
                raise tarfile.ReadError(f"no valid tar header at byte {where}, data follows")
    except (tarfile.TarError, OSError, EOFError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        if current is not None:
            current.error = reason
            yield current
            return
        yield _Sample(None, error=reason)
        return
    if current is not None:
        yield current


def _unread_data(tar: tarfile.TarFile) -> int | None:
    """Where non-zero bytes follow the point at which tarfile stopped reading, or None (a
    whole tar ends in zero blocks)."""
    f = tar.fileobj
    f.seek(tar.offset)
    pos = tar.offset
    while chunk := f.read(1 << 20):
        stripped = chunk.lstrip(b"\0")
        if stripped:
            return pos + len(chunk) - len(stripped)
        pos += len(chunk)
    return None


def _by_suffix(sample: _Sample) -> dict[str, bytes]:
    """``suffix -> bytes``, suffixes lower-case, as training reads them (``tar_samples``)."""
    members: dict[str, bytes] = {}
    for info, data in sample.members:
        suffix = base_plus_ext(info.name)[1].lower()
        if suffix in members:
            raise _Skip(f"member '{info.name}' appears twice")
        members[suffix] = data
    return members


def _copy_members(tar: tarfile.TarFile, members: list[tuple[tarfile.TarInfo, bytes | None]],
                  replace: dict[str, bytes], key: str | None = None) -> None:
    """``members`` with their own headers; those named in ``replace`` with its bytes instead,
    and ``replace``'s members the sample lacked appended (as ``key.suffix``)."""
    left = dict(replace)
    for info, data in members:
        if info.isreg() and key is not None:
            suffix = base_plus_ext(info.name)[1].lower()
            if suffix in left:
                data = left.pop(suffix)
        info = copy.copy(info)
        if data is None:
            tar.addfile(info)
            continue
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    for suffix, data in left.items():
        info = tarfile.TarInfo(f"{key}.{suffix}")
        info.size, info.mtime, info.mode = len(data), 0, 0o444
        info.uname = info.gname = "omnitrain"
        tar.addfile(info, io.BytesIO(data))
