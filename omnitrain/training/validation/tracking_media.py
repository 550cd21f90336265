"""Validation samples as files under the run and as logger media.

``runs/<name>/samples/step-NNNNNN/`` holds ``replies.md`` (each prompt, the expected and
the generated reply), ``reply-<i>.wav`` and ``reply-<i>-mel.png`` (the generated reply's
audio and the DiT's mel), and ``true_codes.wav`` (the DiT + vocoder on a validation
reply's true codes). wandb gets a table of the texts, the audio and the images;
TensorBoard the same as text, audio and images. The mel image is drawn with PIL (a
colour map of low-to-high energy, low frequencies at the bottom): no plotting library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image

# magma-like anchors, dark (low energy) to light (high)
_COLOURS = np.array([[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]], dtype=np.float32)


def mel_image(mel: torch.Tensor, min_height: int = 160, min_width: int = 240) -> Image.Image:
    """(frames, n_mels) -> an RGB image, time left to right, frequency bottom to top."""
    m = mel.detach().float().cpu().numpy().T[::-1]  # (n_mels, frames), low bins at the bottom
    if m.size == 0:
        m = np.zeros((1, 1), dtype=np.float32)
    lo, hi = float(np.nanmin(m)), float(np.nanmax(m))
    x = np.nan_to_num((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)) * (len(_COLOURS) - 1)
    i = np.clip(np.floor(x).astype(int), 0, len(_COLOURS) - 2)
    f = (x - i)[..., None]
    rgb = (_COLOURS[i] * (1 - f) + _COLOURS[i + 1] * f).astype(np.uint8)
    img = Image.fromarray(rgb, "RGB")
    sy, sx = max(1, -(-min_height // img.height)), max(1, -(-min_width // img.width))
    return img.resize((img.width * sx, img.height * sy), Image.NEAREST)


@dataclass
class SampleRow:
    key: str
    prompt: str
    expected: str
    generated: str
    wave: torch.Tensor  # (samples,) CPU float
    mel: torch.Tensor  # (frames, n_mels)
    speech_error: str = ""  # why there is no audio


@dataclass
class StepSamples:
    step: int
    sample_rate: int
    rows: list[SampleRow]
    true_codes: torch.Tensor | None = None  # the DiT + vocoder on true codes


def write_files(out: Path, s: StepSamples) -> dict[str, list[Path]]:
    """Write the step's folder; returns the wav and png paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {"wav": [], "png": []}
    lines = [f"# Validation samples at step {s.step}", ""]
    for i, row in enumerate(s.rows):
        lines += [f"## {i}: {row.key}", "", "**prompt**", "", "```", row.prompt, "```", "",
                  f"**expected:** {row.expected}", "", f"**generated:** {row.generated}", ""]
        if row.wave.numel():
            path = out / f"reply-{i}.wav"
            sf.write(str(path), row.wave.numpy(), s.sample_rate)
            written["wav"].append(path)
            lines.append(f"audio: [{path.name}]({path.name}) ({row.wave.numel() / s.sample_rate:.2f} s)")
        else:
            lines.append(f"audio: none ({row.speech_error or 'the Talker stopped before its first code'})")
        if row.mel.numel():
            path = out / f"reply-{i}-mel.png"
            mel_image(row.mel).save(path)
            written["png"].append(path)
            lines.append(f"mel: ![mel]({path.name})")
        lines.append("")
    if s.true_codes is not None and s.true_codes.numel():
        path = out / "true_codes.wav"
        sf.write(str(path), s.true_codes.numpy(), s.sample_rate)
        written["wav"].append(path)
        lines.append(f"DiT + vocoder on a validation reply's true codes: [{path.name}]({path.name})")
    (out / "replies.md").write_text("\n".join(lines) + "\n")
    return written


def log_media(loggers: Sequence, s: StepSamples) -> None:
    """The step's samples to each wandb / TensorBoard logger attached."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            _to_wandb(logger, s)
        elif isinstance(logger, TensorBoardLogger):
            _to_tensorboard(logger.experiment, s)


def _to_wandb(logger, s: StepSamples) -> None:
    import wandb

    if s.rows:
        data = [[r.key, r.prompt, r.expected, r.generated] for r in s.rows]
        logger.log_table("samples/replies", columns=["key", "prompt", "expected", "generated"], data=data,
                         step=s.step)
        audio = [wandb.Audio(r.wave.numpy(), sample_rate=s.sample_rate, caption=r.generated[:80])
                 for r in s.rows if r.wave.numel()]
        images = [wandb.Image(mel_image(r.mel), caption=r.generated[:80]) for r in s.rows if r.mel.numel()]
        media = {k: v for k, v in (("samples/reply_audio", audio), ("samples/reply_mel", images)) if v}
        if media:
            logger.log_metrics(media, step=s.step)
    if s.true_codes is not None and s.true_codes.numel():
        logger.log_audio("samples/speech", [s.true_codes.numpy()], step=s.step, sample_rate=[s.sample_rate])


def _to_tensorboard(writer, s: StepSamples) -> None:
    for i, r in enumerate(s.rows):
        writer.add_text(f"samples/reply_{i}", f"**prompt:** {r.prompt}\n\n**expected:** {r.expected}\n\n"
                                               f"**generated:** {r.generated}", s.step)
        if r.wave.numel():
            writer.add_audio(f"samples/reply_{i}_audio", r.wave.clamp(-1, 1)[:, None], s.step, sample_rate=s.sample_rate)
        if r.mel.numel():
            writer.add_image(f"samples/reply_{i}_mel", np.asarray(mel_image(r.mel)), s.step, dataformats="HWC")
    if s.true_codes is not None and s.true_codes.numel():
        writer.add_audio("samples/speech", s.true_codes.clamp(-1, 1)[:, None], s.step, sample_rate=s.sample_rate)
    writer.flush()
