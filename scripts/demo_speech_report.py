"""The spoken demo's figures (``make demo-speech``): the held-out replies' eval beside the
real recordings' and the codec's copy-synthesis, the issue's gates, and a spectrogram PNG of
a reply above the real recording of the same words in the same voice.

    python scripts/demo_speech_report.py runs/demo-speech [--gate]

Reads RUN/eval.json (``omnitrain eval BUNDLE``), RUN/truth.json and RUN/resynth.json
(``eval --audio``); writes RUN/report.md and RUN/spectrogram.png. With ``--gate`` it exits 1
when a target is missed (each printed with its margin).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image, ImageDraw

ROWS = ("accuracy", "wer", "sim", "voice_id")


def summary(path: Path) -> dict:
    report = json.loads(path.read_text())
    (entry,) = report["bundles"].values()
    return entry


def log_spectrogram(wave: np.ndarray, n_fft: int = 512, hop: int = 128) -> np.ndarray:
    spec = torch.stft(torch.from_numpy(wave).float(), n_fft, hop, window=torch.hann_window(n_fft),
                      return_complex=True).abs()
    db = 20 * np.log10(spec.numpy() + 1e-5)
    return np.clip((db - db.max() + 80) / 80, 0, 1)[::-1]  # low frequencies at the bottom


def colour(x: np.ndarray) -> np.ndarray:
    """A dark-blue -> yellow ramp (no matplotlib needed)."""
    stops = np.array([[10, 10, 40], [60, 20, 120], [200, 60, 80], [250, 200, 60], [255, 255, 200]], float)
    pos = x * (len(stops) - 1)
    i = np.clip(pos.astype(int), 0, len(stops) - 2)
    t = (pos - i)[..., None]
    return (stops[i] * (1 - t) + stops[i + 1] * t).astype(np.uint8)


def spectrogram_png(reply: Path, truth: Path, out: Path, title: str) -> None:
    panels = []
    for label, path in ((f"model: {title}", reply), ("real recording", truth)):
        wave, _ = sf.read(str(path), dtype="float32")
        img = Image.fromarray(colour(log_spectrogram(wave))).resize((600, 200))
        canvas = Image.new("RGB", (600, 220), (255, 255, 255))
        canvas.paste(img, (0, 20))
        ImageDraw.Draw(canvas).text((4, 4), label, fill=(0, 0, 0))
        panels.append(canvas)
    sheet = Image.new("RGB", (600, 440), (255, 255, 255))
    for k, panel in enumerate(panels):
        sheet.paste(panel, (0, 220 * k))
    sheet.save(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--gate", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args(argv)
    model, truth, resynth = (summary(args.run / f"{n}.json") for n in ("eval", "truth", "resynth"))
    m, t, r = model["summary"], truth["summary"], resynth["summary"]
    lines = ["| | items | text accuracy | wer | sim | voice_id |", "|---|---|---|---|---|---|"]
    for name, s in (("model's replies (held out)", m), ("real recordings (truth)", t), ("codec copy-synthesis", r)):
        cells = ["-" if s.get(k) is None else f"{s[k]:.3f}" for k in ROWS]
        lines.append(f"| {name} | {s['items']} | " + " | ".join(cells) + " |")
    gates = [
        ("held-out text accuracy >= 0.90", m["accuracy"], m["accuracy"] is not None and m["accuracy"] >= 0.90),
        ("truth wer <= 0.10", t["wer"], t["wer"] <= 0.10),
        ("replies' wer <= truth wer + 0.10", m["wer"] - t["wer"], m["wer"] <= t["wer"] + 0.10),
        ("copy-synthesis wer <= truth wer + 0.05", r["wer"] - t["wer"], r["wer"] <= t["wer"] + 0.05),
        ("nearest voice = the one asked for >= 0.80", m["voice_id"], (m["voice_id"] or 0) >= 0.80),
    ]
    lines += ["", "| target | measured | met |", "|---|---|---|"]
    lines += [f"| {name} | {value:.3f} | {'yes' if ok else 'NO'} |" for name, value, ok in gates]
    # a reply whose text is right, beside the real recording of the same item
    truth_audio = {row["id"]: row["audio"] for row in truth["items"]}
    pick = next((row for row in model["items"] if row.get("correct") and row.get("audio")), model["items"][0])
    if pick.get("audio"):
        spectrogram_png(Path(pick["audio"]), Path(truth_audio[pick["id"]]), args.run / "spectrogram.png",
                        f"{pick['id']} '{pick['text']}' heard as '{pick.get('transcript')}'")
        lines += ["", f"spectrogram: {args.run / 'spectrogram.png'} ({pick['id']}, the model above, the real "
                      "recording below)"]
    text = "\n".join(lines) + "\n"
    (args.run / "report.md").write_text(text)
    print(text)
    missed = [name for name, _, ok in gates if not ok]
    if missed and args.gate:
        print(f"missed: {missed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
