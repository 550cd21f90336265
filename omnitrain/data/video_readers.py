"""One interface over two video decoders, so every platform can read videos.

decord has wheels only for x86-64 Linux and Windows (none for macOS or aarch64, and no
sdist); PyAV, a dependency everywhere, decodes the same files. ``choose_reader`` takes
decord where it imports and PyAV otherwise; ``OMNITRAIN_VIDEO_READER=decord|pyav``
(or ``open_video(..., reader=...)``) forces one. Both give the same timestamps, frames
(within codec tolerance) and audio for a file.
"""

from __future__ import annotations

import io
import os
from typing import Protocol

import numpy as np

ENV_VAR = "OMNITRAIN_VIDEO_READER"
READERS = ("decord", "pyav")


class VideoReader(Protocol):
    """A video opened from bytes: frame times, frames by index, the audio track."""

    name: str

    def timestamps(self) -> np.ndarray:
        """(N,) float64: the presentation time of each frame in seconds, increasing."""
        ...

    def frames(self, indices: list[int]) -> np.ndarray:
        """(len(indices), H, W, 3) uint8 RGB frames; an index is a row of ``timestamps()``."""
        ...

    def audio(self, sample_rate: int) -> np.ndarray:
        """The first audio track, mono float32 (T,) at ``sample_rate``; raises without one."""
        ...


def decord_available() -> bool:
    try:
        import decord  # noqa: F401
    except ImportError:
        return False
    return True


def choose_reader(reader: str | None = None) -> str:
    """``reader``, else $OMNITRAIN_VIDEO_READER, else decord if it imports, else pyav."""
    wanted = (reader or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if wanted == "auto":
        return "decord" if decord_available() else "pyav"
    if wanted not in READERS:
        raise ValueError(f"video reader {wanted!r} (from {'the call' if reader else ENV_VAR}) "
                         f"is unknown: use one of {', '.join(READERS)} or auto")
    if wanted == "decord" and not decord_available():
        raise ValueError(f"video reader 'decord' is not installed (it has wheels only for x86-64 "
                         f"Linux and Windows): unset {ENV_VAR} or set it to pyav")
    return wanted


def open_video(data: bytes, reader: str | None = None) -> VideoReader:
    """Open video bytes with the chosen reader; a file no decoder reads raises here."""
    return DecordReader(data) if choose_reader(reader) == "decord" else PyAVReader(data)


class DecordReader:
    name = "decord"

    def __init__(self, data: bytes) -> None:
        import decord

        # quiet: decord logs what it failed to open, file text included
        decord.logging.set_level(decord.logging.QUIET)
        self._decord = decord
        self._data = data
        self._reader = decord.VideoReader(io.BytesIO(data))

    def timestamps(self) -> np.ndarray:
        n = len(self._reader)
        if n == 0:
            return np.zeros(0)
        return np.asarray(self._reader.get_frame_timestamp(range(n))[:, 0], dtype=np.float64)

    def frames(self, indices: list[int]) -> np.ndarray:
        return self._reader.get_batch(indices).asnumpy()

    def audio(self, sample_rate: int) -> np.ndarray:
        track = self._decord.AudioReader(io.BytesIO(self._data), sample_rate=sample_rate, mono=True)
        return track[:].asnumpy().reshape(-1).astype(np.float32)


class PyAVReader:
    """FFmpeg through PyAV. Times are the packets' presentation stamps (as decord's), read
    without decoding; ``frames`` decodes the stream once and keeps only the asked ones."""

    name = "pyav"

    def __init__(self, data: bytes) -> None:
        import av

        self._av = av
        self._data = data
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise ValueError("no video stream in the file")
            stream = container.streams.video[0]
            base = stream.time_base
            pts = sorted({p.pts for p in container.demux(stream) if p.pts is not None})
        self._pts = pts
        self._times = np.asarray([float(p * base) for p in pts], dtype=np.float64)

    def timestamps(self) -> np.ndarray:
        return self._times

    def frames(self, indices: list[int]) -> np.ndarray:
        if not indices:
            return np.zeros((0, 0, 0, 3), np.uint8)
        row = {p: i for i, p in enumerate(self._pts)}
        wanted = set(indices)
        got: dict[int, np.ndarray] = {}
        with self._av.open(io.BytesIO(self._data)) as container:
            for order, frame in enumerate(container.decode(container.streams.video[0])):
                i = row.get(frame.pts, order) if frame.pts is not None else order
                if i in wanted and i not in got:
                    got[i] = frame.to_ndarray(format="rgb24")
                if len(got) == len(wanted):
                    break
        missing = sorted(wanted - got.keys())
        if missing:
            raise ValueError(f"frames {missing[:5]} of {len(self._pts)} did not decode")
        return np.stack([got[i] for i in indices])

    def audio(self, sample_rate: int) -> np.ndarray:
        return pyav_audio(self._data, sample_rate)[0]


def pyav_audio(data: bytes, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """The first audio stream of any container FFmpeg reads, mono float32, at
    ``sample_rate`` (None: the stream's own); returns (samples, rate)."""
    import av

    with av.open(io.BytesIO(data)) as container:
        if not container.streams.audio:
            raise ValueError("no audio stream in the file")
        stream = container.streams.audio[0]
        to_mono = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        pieces = [out.to_ndarray().reshape(-1) for frame in container.decode(stream)
                  for out in to_mono.resample(frame)]
        pieces += [out.to_ndarray().reshape(-1) for out in to_mono.resample(None)]
        rate = sample_rate or int(stream.codec_context.sample_rate or 0)
    return (np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)), rate
