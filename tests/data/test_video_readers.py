"""decord and PyAV read the same variable-frame-rate mp4s (with an audio track) alike:
same frame times, same frames within codec tolerance, same audio; and the chooser falls
back to PyAV where decord is missing (macOS, aarch64)."""

from __future__ import annotations

import io
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from omnitrain.data.build.media_writers import encode_mp4
from omnitrain.data.media import MediaError, load_video
from omnitrain.data.video_readers import ENV_VAR, PyAVReader, choose_reader, open_video

# frame i is on screen from TIMES[i]: bursts and long holds
TIMES = np.array([0.0, 0.04, 0.1, 0.2, 0.8, 1.0, 1.45, 1.6, 1.9, 2.35])
SR = 16000


def source_frames(h: int = 48, w: int = 64) -> np.ndarray:
    """A gradient with a bright block whose place and level name the frame."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(len(TIMES)):
        img = np.stack([(xx * 3) % 256, (yy * 4) % 256, np.full_like(xx, 20 * i)], -1)
        img[8:24, 4 * i:4 * i + 16] = 250
        out.append(img.astype(np.uint8))
    return np.stack(out)


def tone(seconds: float = 2.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 440 * t) * np.minimum(1, t * 4)).astype(np.float32)


def h264_with_b_frames(frames: np.ndarray, audio: np.ndarray) -> bytes:
    """H.264 (decode order != presentation order) + AAC, variable frame rate."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        vs.options = {"bf": "2", "crf": "12", "g": "4"}
        aus = out.add_stream("aac", rate=SR)
        aus.layout = "mono"
        for frame, t in zip(frames, TIMES):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            vf.pts, vf.time_base = int(round(t * 1000)), Fraction(1, 1000)
            out.mux(vs.encode(vf))
        out.mux(vs.encode())
        af = av.AudioFrame.from_ndarray(audio[None], format="fltp", layout="mono")
        af.sample_rate = SR
        out.mux(aus.encode(af))
        out.mux(aus.encode(None))
    return buf.getvalue()


def which_source(frames: np.ndarray) -> list[int]:
    """The index of the source frame each decoded frame is closest to."""
    src = source_frames().astype(np.int16)
    return [int(np.abs(src - f.astype(np.int16)).mean(axis=(1, 2, 3)).argmin()) for f in frames]


# sampled at 2 fps (0, 0.5, ..., 2.5 s): the frame on screen at each time
SHOWN = [0, 3, 5, 6, 8, 9]


@pytest.fixture(params=["mpeg4", "h264"])
def vfr_mp4(request) -> bytes:
    if request.param == "mpeg4":  # what `omnitrain data demo` writes
        return encode_mp4(source_frames(), 10.0, audio=tone(), sample_rate=SR, frame_times=TIMES)
    return h264_with_b_frames(source_frames(), tone())


def test_both_readers_agree_on_a_vfr_mp4(vfr_mp4):
    pytest.importorskip("decord")
    dec, pav = open_video(vfr_mp4, "decord"), open_video(vfr_mp4, "pyav")
    assert (dec.name, pav.name) == ("decord", "pyav")
    np.testing.assert_allclose(dec.timestamps(), TIMES, rtol=0, atol=5e-7)  # measured 9.5e-8
    np.testing.assert_allclose(pav.timestamps(), dec.timestamps(), rtol=0, atol=5e-7)  # measured 9.5e-8
    every = list(range(len(TIMES)))
    a, b = dec.frames(every).astype(np.int16), pav.frames(every).astype(np.int16)
    assert a.shape == b.shape == source_frames().shape
    assert np.array_equal(a, b)  # measured: identical (max difference 0) for both codecs
    assert which_source(b) == every  # and right, not just alike
    picked = [7, 2, 2, 0]  # any order, repeats: what load_video asks for
    assert np.array_equal(pav.frames(picked), pav.frames(every)[picked])
    wa, wb = dec.audio(SR), pav.audio(SR)
    # AAC adds priming and pads its last 1024-sample frame
    assert len(wa) == len(wb) and abs(len(wb) - len(tone())) < 2048  # measured 0 and 1984
    assert np.abs(wa - wb).max() < 1e-6  # measured 1.2e-7
    assert abs(np.abs(wb).max() - 0.3) < 2e-3  # the tone's amplitude; measured 2.9e-4


def test_load_video_is_the_same_with_either_reader(vfr_mp4):
    pytest.importorskip("decord")
    dec = load_video(vfr_mp4, 2.0, 2, 16, audio_rate=SR, reader="decord")
    pav = load_video(vfr_mp4, 2.0, 2, 16, audio_rate=SR, reader="pyav")
    assert np.array_equal(dec.times, pav.times) and dec.fps == pav.fps
    assert which_source(dec.frames) == which_source(pav.frames) == SHOWN
    assert np.array_equal(dec.frames, pav.frames)  # measured: identical
    assert np.allclose(dec.audio.numpy(), pav.audio.numpy(), rtol=0, atol=1e-6)  # measured 1.2e-7


def test_pyav_reader_alone_follows_real_timestamps(vfr_mp4):
    """What runs on macOS and aarch64, where decord cannot be installed."""
    video = load_video(vfr_mp4, 2.0, 2, 16, audio_rate=SR, reader="pyav")
    assert np.array_equal(video.times, np.arange(6) / 2)  # measured: exact (n / 2.0)
    assert which_source(video.frames) == SHOWN
    assert video.audio is not None
    assert abs(float(video.audio.abs().max()) - 0.3) < 2e-3  # the tone's amplitude; measured 2.9e-4


def test_chooser_takes_pyav_when_decord_is_missing(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` now raises ImportError
    assert choose_reader() == "pyav"
    data = encode_mp4(source_frames(), 10.0, frame_times=TIMES)
    assert isinstance(open_video(data), PyAVReader)
    assert which_source(load_video(data, 2.0, 2, 16).frames) == SHOWN
    with pytest.raises(ValueError, match="'decord' is not installed.*set it to pyav"):
        choose_reader("decord")


def test_chooser_takes_decord_where_it_imports_and_obeys_the_env_var(monkeypatch):
    pytest.importorskip("decord")
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert choose_reader() == "decord"
    monkeypatch.setenv(ENV_VAR, "pyav")
    assert choose_reader() == "pyav"
    assert choose_reader("decord") == "decord"  # an explicit choice beats the env var
    monkeypatch.setenv(ENV_VAR, "opencv")
    with pytest.raises(ValueError, match=f"'opencv' \\(from {ENV_VAR}\\) is unknown"):
        choose_reader()


@pytest.mark.parametrize("reader", ["decord", "pyav"])
def test_not_a_video_is_a_media_error_with_either_reader(reader):
    if reader == "decord":
        pytest.importorskip("decord")
    with pytest.raises(MediaError, match="not a decodable video"):
        load_video(b"\x00\x00\x00\x18ftypmp42garbage" * 10, 2.0, 2, 16, reader=reader)
    audio_only = io.BytesIO()
    with av.open(audio_only, mode="w", format="mp4") as out:
        aus = out.add_stream("aac", rate=SR)
        aus.layout = "mono"
        af = av.AudioFrame.from_ndarray(tone(0.5)[None], format="fltp", layout="mono")
        af.sample_rate = SR
        out.mux(aus.encode(af))
        out.mux(aus.encode(None))
    with pytest.raises(MediaError, match="video"):
        load_video(audio_only.getvalue(), 2.0, 2, 16, reader=reader)
