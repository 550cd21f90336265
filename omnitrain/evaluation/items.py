"""What ``omnitrain eval`` scores, read from a manifest: prompts for bundles (the JSONL of
``generate --manifest``, plus ``expected`` and ``reference``, or seed-tts-eval's list format)
and existing audio for ``--audio``. Paths are relative to the manifest's folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omnitrain.evaluation.errors import EvalError

SAY = "Say: {text}"  # how a seed-tts-eval line asks the model to speak its text


class ManifestError(EvalError):
    """A manifest line that cannot be read; the message names the file, line and field."""


@dataclass
class PromptItem:
    id: str
    text: str
    media: dict[str, str] = field(default_factory=dict)  # audio/image/video -> path
    expected: str | None = None
    reference: str | None = None  # a wav of the voice to answer in
    speaker: str | None = None  # a voice the model knows by name (speech.speakers); None: its default


@dataclass
class AudioItem:
    id: str
    audio: str
    text: str | None = None  # what the audio says
    reference: str | None = None
    speaker: str | None = None  # whose voice it should be (``--voices``' voice_id)


def _lines(manifest: Path) -> list[tuple[int, str]]:
    if not manifest.is_file():
        raise ManifestError(f"manifest {manifest} does not exist")
    return [(n, line) for n, line in enumerate(manifest.read_text().splitlines(), 1) if line.strip()]


def _path(manifest: Path, n: int, key: str, value: object) -> str:
    path = manifest.parent / str(value)
    if not path.is_file():
        raise ManifestError(f"{manifest}:{n}: {key} file {path} does not exist")
    return str(path)


def _json(manifest: Path, n: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{manifest}:{n}: not a JSON object ({exc.msg})") from None
    if not isinstance(row, dict):
        raise ManifestError(f"{manifest}:{n}: not a JSON object")
    return row


def read_prompts(manifest: Path, say: str = SAY) -> list[PromptItem]:
    """JSONL items ``{"text", "audio"/"image"/"video", "expected", "reference", "speaker", "id"}``, or
    a seed-tts-eval list (``.lst``/``.txt``: ``utt|prompt_text|prompt_wav|target_text``),
    each line asking for ``target_text`` in ``prompt_wav``'s voice."""
    items = []
    seed_tts = manifest.suffix in (".lst", ".txt")
    for n, line in _lines(manifest):
        if seed_tts:
            parts = line.split("|")
            if len(parts) != 4:
                raise ManifestError(f"{manifest}:{n}: a seed-tts-eval line is utt|prompt_text|prompt_wav|target_text, "
                                    f"got {len(parts)} fields")
            utt, _, wav, target = parts
            items.append(PromptItem(utt, say.format(text=target), expected=target,
                                    reference=_path(manifest, n, "prompt_wav", wav)))
            continue
        row = _json(manifest, n, line)
        if not isinstance(row.get("text"), str):
            raise ManifestError(f"{manifest}:{n}: 'text' (the prompt) is missing")
        media = {k: _path(manifest, n, k, row[k]) for k in ("audio", "image", "video") if row.get(k)}
        reference = _path(manifest, n, "reference", row["reference"]) if row.get("reference") else None
        expected = str(row["expected"]) if "expected" in row else None
        speaker = str(row["speaker"]) if row.get("speaker") else None
        items.append(PromptItem(str(row.get("id", f"{len(items):04d}")), row["text"], media, expected, reference,
                                speaker))
    return items


def read_audio(manifest: Path) -> list[AudioItem]:
    """JSONL items ``{"audio": wav, "text": what it says, "reference": wav, "speaker": name, "id"}``."""
    items = []
    for n, line in _lines(manifest):
        row = _json(manifest, n, line)
        if not row.get("audio"):
            raise ManifestError(f"{manifest}:{n}: 'audio' (the wav to score) is missing")
        items.append(AudioItem(str(row.get("id", f"{len(items):04d}")), _path(manifest, n, "audio", row["audio"]),
                               str(row["text"]) if "text" in row else None,
                               _path(manifest, n, "reference", row["reference"]) if row.get("reference") else None,
                               str(row["speaker"]) if row.get("speaker") else None))
    return items


def read_voices(manifest: Path) -> dict[str, list[str]]:
    """JSONL ``{"speaker": name, "audio": wav}``: recordings of each voice, one or more a
    voice (``--voices``)."""
    voices: dict[str, list[str]] = {}
    for n, line in _lines(manifest):
        row = _json(manifest, n, line)
        if not row.get("speaker") or not row.get("audio"):
            raise ManifestError(f"{manifest}:{n}: a voice line needs 'speaker' (its name) and 'audio' (a wav of it)")
        voices.setdefault(str(row["speaker"]), []).append(_path(manifest, n, "audio", row["audio"]))
    if len(voices) < 2:
        raise ManifestError(f"{manifest}: --voices needs two or more voices to tell apart, found {len(voices)}")
    return voices
