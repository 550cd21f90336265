"""Decode media bytes: audio to 16 kHz mono, images to RGB, video frames by timestamp.

soundfile reads wav/flac/ogg (torchaudio 2.11's loader needs system FFmpeg), PyAV the
audio of other containers (mp3, m4a); video frames and video audio tracks come from
``video_readers`` (decord where it is installed, PyAV elsewhere), from bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from PIL import Image

from omnitrain.data.video_readers import choose_reader, open_video, pyav_audio


class MediaError(ValueError):
    """Media that cannot be decoded; the message says which and why."""


def why(exc: BaseException, data: bytes) -> str:
    """A decoder's error, fit for logs and reports: one line, short, and never quoting
    the file (decord's "ERROR opening: <the file's text>" would copy a file that was not
    media at all, /etc/passwd say, into skipped.jsonl)."""
    message = " ".join(str(exc).split())[:200]
    head = data[:1 << 16].decode("latin-1")
    quotes = any(message[i:i + 12] in head for i in range(max(0, len(message) - 11)))
    return type(exc).__name__ + ("" if quotes or not message else f": {message}")


def load_audio(data: bytes, sample_rate: int, what: str = "audio") -> torch.Tensor:
    """Any-rate, any-channel audio bytes -> mono float32 (T,) at ``sample_rate``."""
    if not data:
        raise MediaError(f"{what}: empty file (0 bytes)")
    try:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        wave = torch.from_numpy(wave.mean(axis=1))
    except Exception:
        wave, sr = _container_audio(data, what)
    if wave.numel() == 0:
        raise MediaError(f"{what}: no audio samples")
    if sr <= 0:
        raise MediaError(f"{what}: sample rate {sr} Hz in the header (a corrupt or truncated file)")
    require_finite(wave, what)
    if sr != sample_rate:
        try:
            wave = AF.resample(wave, sr, sample_rate)
        except Exception as exc:
            raise MediaError(f"{what}: cannot resample {sr} Hz to {sample_rate} Hz ({exc})") from exc
    return wave


def require_finite(values: torch.Tensor | np.ndarray, what: str) -> None:
    """A float file (wav, TIFF) can hold NaN or inf; one would make the loss NaN."""
    bad = int((~torch.isfinite(torch.as_tensor(values))).sum())
    if bad:
        raise MediaError(f"{what}: {bad} non-finite values (NaN or inf) in the decoded data")


def _container_audio(data: bytes, what: str) -> tuple[torch.Tensor, int]:
    """The first audio stream of any container FFmpeg reads (mp3, m4a, mp4, webm), mono,
    at its own rate. PyAV, not decord: decord's reader crashes the process on some
    truncated files instead of raising."""
    try:
        wave, rate = pyav_audio(data)
    except Exception as exc:
        raise MediaError(f"{what}: not a decodable audio file ({why(exc, data)})") from exc
    return torch.from_numpy(wave), rate


def load_image(data: bytes, what: str = "image") -> np.ndarray:
    """Image bytes in any mode PIL knows (incl. CMYK, palette, 16-bit) -> (H, W, 3) uint8."""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:
        raise MediaError(f"{what}: not a decodable image ({why(exc, data)})") from exc
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit grey: rescale, don't clip
        arr = np.asarray(img, dtype=np.float64)
        require_finite(arr, what)
        arr = arr - min(0.0, float(arr.min()))
        peak = arr.max() or 1.0
        img = Image.fromarray((arr / peak * 255).astype(np.uint8))
    return np.asarray(img.convert("RGB"))


@dataclass
class Video:
    frames: np.ndarray  # (T, H, W, 3) uint8, sampled by timestamp
    times: np.ndarray  # (T,) presentation time of each frame, seconds
    fps: float  # sampling rate actually used
    audio: torch.Tensor | None  # mono track at the requested rate, or None


def load_video(
    data: bytes,
    fps: float,
    min_frames: int,
    max_frames: int,
    audio_rate: int | None = None,
    what: str = "video",
    reader: str | None = None,
) -> Video:
    """Sample frames at ``fps`` by their real timestamps (variable frame rate safe).
    ``reader``: decord or pyav (default: ``video_readers.choose_reader``)."""
    if fps <= 0:
        raise MediaError(f"{what}: video fps must be > 0, got {fps}")
    backend = choose_reader(reader)  # a wrong name is the user's setting, not the file's fault
    try:
        video = open_video(data, backend)
        stamps = video.timestamps()
    except Exception as exc:
        raise MediaError(f"{what}: not a decodable video ({why(exc, data)})") from exc
    if len(stamps) == 0:
        raise MediaError(f"{what}: video has no frames")
    duration = float(stamps[-1]) + (float(stamps[-1] - stamps[-2]) if len(stamps) > 1 else 1 / fps)
    nominal = max(1, round(duration * fps))
    n = int(np.clip(nominal, min_frames, max_frames))
    # exactly ``fps`` unless the frame bounds force another rate over the whole clip
    rate = fps if n == nominal else n / duration
    targets = np.arange(n) / rate
    # the last frame shown at or before each target time
    idx = np.clip(np.searchsorted(stamps, targets + 1e-6, side="right") - 1, 0, len(stamps) - 1)
    try:
        frames = video.frames(idx.tolist())
    except Exception as exc:
        raise MediaError(f"{what}: frames could not be decoded ({why(exc, data)})") from exc
    audio = None
    if audio_rate is not None:
        try:
            audio = torch.from_numpy(video.audio(audio_rate))
        except Exception as exc:
            raise MediaError(f"{what}: has no readable audio track ({why(exc, data)})") from exc
        require_finite(audio, f"{what} audio track")
    return Video(frames, targets, rate, audio)
