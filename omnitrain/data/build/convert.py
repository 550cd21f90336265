"""``omnitrain data convert``: conversations in the formats users have -> a pack manifest.

Formats (``--from``):

- ``sharegpt``: a JSON list or JSONL of ``{"conversations": [{"from": "human"|"gpt"|"system",
  "value": "..."}], "system"?: "...", "images"?/"audios"?/"videos"?: [...]}``
- ``llamafactory``: LLaMA-Factory's ``mllm`` layout, ``{"messages": [{"role", "content"}],
  "images"/"audios"/"videos": [...]}``
- ``hf``: a Hugging Face dataset on disk: a folder written by ``datasets.save_to_disk``
  (``*.arrow``) or parquet files (a file or a folder of them); each row is either of the
  above, and media columns may hold paths or ``{"bytes", "path"}`` (written out next to OUT)

``<image>``/``<audio>``/``<video>`` placeholders in the text are replaced, in order, by the
entries of the matching media list; media paths are resolved relative to the source file.
A record that cannot be mapped is counted and reported with its reason (and written to
``OUT.skipped.jsonl``); nothing converted is an error.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from omnitrain.data.build.convert_base import MEDIA_LISTS, ConvertError, Record, Unmappable
from omnitrain.data.build.convert_hf import read_hf_records

FORMATS = ("sharegpt", "llamafactory", "hf")
PLACEHOLDER = re.compile(r"<(image|audio|video)>")
ROLE_NAMES = {
    "system": "system",
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bard": "assistant",
    "bing": "assistant", "model": "assistant",
}


@dataclass
class ConvertResult:
    converted: int = 0
    skipped: list[dict] = field(default_factory=list)  # {"record": n (from 1), "reason": ...}
    media_dir: Path | None = None  # where media stored inside the source (bytes) were written


def read_json_records(path: Path) -> Iterator[Record | Unmappable]:
    """A JSON list, or one JSON object per line."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConvertError(f"{path} starts like a JSON list but is not valid JSON: {exc}") from exc
        for row in rows:
            yield Record(row, path.parent) if isinstance(row, dict) else Unmappable("not a JSON object")
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Unmappable(f"line {number} is not valid JSON: {exc}")
            continue
        yield Record(row, path.parent) if isinstance(row, dict) else Unmappable(f"line {number} is not a JSON object")


def convert(fmt: str, src: Path, out: Path, video_audio: bool = False) -> ConvertResult:
    """Writes the manifest ``out`` (JSONL) and ``out.skipped.jsonl``; returns the counts."""
    src, out = Path(src), Path(out)
    if fmt not in FORMATS:
        raise ConvertError(f"--from {fmt}: unknown format; choose one of {', '.join(FORMATS)}")
    if not src.exists():
        raise ConvertError(f"'{src}' does not exist")
    result = ConvertResult()
    if fmt == "hf":
        media_dir = out.parent / f"{out.stem}_media"
        records: Iterator[Record | Unmappable] = read_hf_records(src, media_dir)
        result.media_dir = media_dir
    else:
        if not src.is_file():
            raise ConvertError(f"--from {fmt} reads a .json or .jsonl file; '{src}' is a folder")
        records = read_json_records(src)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for number, record in enumerate(records, 1):
            try:
                if isinstance(record, Unmappable):
                    raise record
                conversation = to_conversation(record, fmt, out.parent, video_audio)
            except Unmappable as exc:
                result.skipped.append({"record": number, "reason": str(exc)})
                continue
            f.write(json.dumps(conversation, ensure_ascii=False) + "\n")
            result.converted += 1
    os.replace(tmp, out)
    skipped_path = out.with_name(out.name + ".skipped.jsonl")
    skipped_path.write_text("".join(json.dumps(s) + "\n" for s in result.skipped))
    if result.converted == 0:
        raise ConvertError(f"no record of {src} could be converted as --from {fmt} ({len(result.skipped)} "
                           f"skipped; reasons in {skipped_path})" + _first_reason(result))
    return result


def _first_reason(result: ConvertResult) -> str:
    return f"; first: record {result.skipped[0]['record']}: {result.skipped[0]['reason']}" if result.skipped else ""


# ---- one record ---------------------------------------------------------------------
def to_conversation(record: Record, fmt: str, out_dir: Path, video_audio: bool = False) -> dict:
    row = record.data
    if fmt == "sharegpt" or (fmt == "hf" and "conversations" in row):
        messages, role_key, content_key = row.get("conversations"), "from", "value"
        what = "'conversations'"
    else:
        messages, role_key, content_key = row.get("messages"), "role", "content"
        what = "'messages'"
    if not isinstance(messages, list) or not messages:
        keys = sorted(row)[:8]
        hint = {"'messages'": ("conversations", "sharegpt"), "'conversations'": ("messages", "llamafactory")}[what]
        other = f"; it has '{hint[0]}': use --from {hint[1]}" if hint[0] in row else ""
        raise Unmappable(f"needs a non-empty {what} list (has keys {keys}){other}")
    media = {kind: _media_list(row, kind) for kind in MEDIA_LISTS}
    used = dict.fromkeys(MEDIA_LISTS, 0)
    turns = []
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        turns.append({"role": "system", "content": [{"text": system}]})
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise Unmappable(f"message {i} is not an object")
        raw_role = message.get(role_key)
        role = ROLE_NAMES.get(str(raw_role).lower()) if raw_role is not None else None
        if role is None:
            raise Unmappable(f"message {i}: role {raw_role!r} has no omnitrain counterpart "
                             "(system, user/human, assistant/gpt)")
        if role == "system" and turns:
            raise Unmappable(f"message {i}: a system message after the first turn")
        parts = _parts(message.get(content_key), media, used, record.base, out_dir, i, video_audio)
        if role != "user" and any("text" not in p for p in parts):
            raise Unmappable(f"message {i}: the {role} turn holds media (only user turns may)")
        if not parts:
            raise Unmappable(f"message {i} ({role}) is empty")
        turns.append({"role": role, "content": parts})
    for kind, entries in media.items():
        if used[kind] != len(entries):
            raise Unmappable(f"{len(entries)} {kind} entries but {used[kind]} <{kind}> placeholders")
    if not any(t["role"] == "assistant" for t in turns):
        raise Unmappable("no assistant reply to train on")
    if turns[-1]["role"] != "assistant":
        turns = turns[: max(i for i, t in enumerate(turns) if t["role"] == "assistant") + 1]
    return {"turns": turns}


def _media_list(row: dict, kind: str) -> list:
    for key in MEDIA_LISTS[kind]:
        value = row.get(key)
        if value is None:
            continue
        return list(value) if isinstance(value, list | tuple) else [value]
    return []


def _parts(content, media: dict, used: dict, base: Path, out_dir: Path, i: int, video_audio: bool) -> list[dict]:
    if isinstance(content, list):  # OpenAI-style parts: {"type": "text", "text": ...}, {"type": "image"...}
        return _typed_parts(content, media, used, base, out_dir, i, video_audio)
    if not isinstance(content, str):
        raise Unmappable(f"message {i}: content must be a string or a list of parts, got {type(content).__name__}")
    parts: list[dict] = []
    pos = 0
    for match in PLACEHOLDER.finditer(content):
        if content[pos:match.start()]:
            parts.append({"text": content[pos:match.start()]})
        parts.append(_media_part(match.group(1), media, used, base, out_dir, i, video_audio))
        pos = match.end()
    if content[pos:]:
        parts.append({"text": content[pos:]})
    return parts


def _typed_parts(content: list, media: dict, used: dict, base: Path, out_dir: Path, i: int,
                 video_audio: bool) -> list[dict]:
    parts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append({"text": part["text"]})
        elif kind in MEDIA_LISTS:
            ref = part.get(kind) or part.get("path") or part.get("url")
            if ref is None:  # the entry comes from the row's media list, in order
                parts.append(_media_part(kind, media, used, base, out_dir, i, video_audio))
            else:
                parts.append(_part(kind, _path(ref, base, out_dir, f"message {i} {kind}"), video_audio))
        else:
            raise Unmappable(f"message {i}: a content part of type {kind!r} has no omnitrain counterpart")
    return parts


def _media_part(kind: str, media: dict, used: dict, base: Path, out_dir: Path, i: int, video_audio: bool) -> dict:
    entries = media[kind]
    if used[kind] >= len(entries):
        raise Unmappable(f"message {i}: <{kind}> placeholder {used[kind] + 1} but only {len(entries)} "
                         f"{kind} entries")
    ref = entries[used[kind]]
    used[kind] += 1
    return _part(kind, _path(ref, base, out_dir, f"{kind} entry {used[kind]}"), video_audio)


def _part(kind: str, path: str, video_audio: bool) -> dict:
    part: dict = {kind: path}
    if kind == "video" and video_audio:
        part["use_audio"] = True
    return part


def _path(ref, base: Path, out_dir: Path, what: str) -> str:
    """A media reference -> its path relative to the manifest's folder (pack reads it so)."""
    if isinstance(ref, dict):  # {"path": ...} rows from datasets
        ref = ref.get("path")
    if not isinstance(ref, str) or not ref:
        raise Unmappable(f"{what}: a media entry must be a path, got {type(ref).__name__}")
    if "://" in ref:
        raise Unmappable(f"{what}: '{ref}' is a URL; download the media and name local files")
    path = Path(ref) if Path(ref).is_absolute() else base / ref
    if not path.is_file():
        raise Unmappable(f"{what}: file '{ref}' not found (looked at {path})")
    return os.path.relpath(path.resolve(), out_dir.resolve())
