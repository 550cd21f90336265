"""Copy-synthesis (``omnitrain data resynth``): recordings through a codec and back, to hear
and measure what its codes keep. Each recording of an ``eval --audio`` manifest is encoded
and decoded by the codec's own decoder; the result is a manifest of the same rows (text,
speaker, reference kept) whose audio is the resynthesis, for ``omnitrain eval --audio``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import soundfile as sf
import torchaudio

from omnitrain.evaluation.items import AudioItem
from omnitrain.evaluation.speech_scores import read_wave
from omnitrain.slots import Codec


def resynthesise(items: list[AudioItem], out: Path, codec: Codec,
                 progress: Callable[[int], object] | None = None) -> Path:
    """``items`` (``read_audio`` of a manifest) encoded and decoded into ``out``; -> its manifest.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for item in items:
        wave, rate = read_wave(item.audio)
        wave = wave.float().reshape(-1)
        if rate != codec.sample_rate:
            wave = torchaudio.functional.resample(wave, rate, codec.sample_rate)
        decoded = codec.decode(codec.encode(wave))
        name = f"{item.id}.wav"
        sf.write(str(out / name), decoded.clamp(-1, 1).numpy(), codec.sample_rate, subtype="PCM_16")
        row = {"id": item.id, "audio": name, "source": str(Path(item.audio).resolve())}
        row.update({k: v for k, v in (("text", item.text), ("speaker", item.speaker)) if v is not None})
        if item.reference:
            row["reference"] = str(Path(item.reference).resolve())
        rows.append(row)
        if progress:
            progress(1)
    path = out / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
