"""Encode media to the bytes shards carry: wav/flac, png/jpg, mp4 with an audio track."""

from __future__ import annotations

import io
from fractions import Fraction

import av
import numpy as np
import soundfile as sf
from PIL import Image


def encode_audio(wave: np.ndarray, sample_rate: int, fmt: str = "WAV") -> bytes:
    """Mono float waveform -> WAV (16-bit PCM) or FLAC bytes."""
    buf = io.BytesIO()
    sf.write(buf, np.asarray(wave, dtype=np.float32), sample_rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def encode_image(rgb: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def encode_mp4(
    frames: np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    frame_times: np.ndarray | None = None,
) -> bytes:
    """(T, H, W, 3) uint8 frames -> mp4 (MPEG-4 part 2 video, AAC audio) bytes.

    ``frame_times`` (seconds) makes a variable-frame-rate clip; default: ``i / fps``.
    """
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        vs = container.add_stream("mpeg4", rate=max(1, int(round(fps))))
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        vs.options = {"qscale": "2"}
        astream = None
        if audio is not None:  # every stream must exist before the first packet is muxed
            astream = container.add_stream("aac", rate=sample_rate)
            astream.layout = "mono"
        times = frame_times if frame_times is not None else np.arange(len(frames)) / fps
        for frame, t in zip(frames, times):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = int(round(t * 1000)), Fraction(1, 1000)
            container.mux(vs.encode(vf))
        container.mux(vs.encode())
        if astream is not None:
            af = av.AudioFrame.from_ndarray(
                np.asarray(audio, dtype=np.float32)[None], format="fltp", layout="mono"
            )
            af.sample_rate = sample_rate
            container.mux(astream.encode(af))
            container.mux(astream.encode(None))
    return buf.getvalue()
