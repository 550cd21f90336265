"""Media encode/decode round trips, on real encoded bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from omnitrain.data.build.media_writers import encode_audio, encode_image, encode_mp4
from omnitrain.data.media import MediaError, load_audio, load_image, load_video


def tone(seconds=0.5, hz=440.0, sr=16000):
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
def test_audio_roundtrip(fmt):
    wave = load_audio(encode_audio(tone(), 16000, fmt), 16000)
    assert wave.shape == (8000,)
    assert np.allclose(wave.numpy(), tone(), atol=1e-3)


def test_audio_is_resampled_and_downmixed():
    stereo = np.stack([tone(sr=44100), tone(sr=44100)], axis=1)
    buf = io.BytesIO()
    sf.write(buf, stereo, 44100, format="WAV")
    wave = load_audio(buf.getvalue(), 16000)
    assert abs(wave.numel() - 8000) <= 1


@pytest.mark.parametrize("data", [b"", b"RIFF\x00\x00not really a wav file at all"])
def test_bad_audio_raises_media_error(data):
    with pytest.raises(MediaError):
        load_audio(data, 16000, "clip.wav")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image_roundtrip(fmt):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :15] = (200, 10, 10)
    out = load_image(encode_image(rgb, fmt))
    assert out.shape == (20, 30, 3) and abs(int(out[5, 5, 0]) - 200) < 10


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "LA"])
def test_image_modes_become_rgb(mode):
    img = Image.new("RGB", (16, 8), (120, 60, 30)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        img = Image.fromarray((np.arange(128).reshape(8, 16) * 500).astype(np.uint16))
    buf = io.BytesIO()
    img.save(buf, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    out = load_image(buf.getvalue())
    assert out.shape == (8, 16, 3) and out.dtype == np.uint8
    if mode == "I;16":
        assert out.max() == 255  # rescaled, not clipped to white


def test_video_frames_follow_real_timestamps():
    """A variable-frame-rate clip: frame i is shown from times[i]; sampling at 2 fps
    must pick the frame on screen at 0, 0.5, 1.0, 1.5 s."""
    times = np.array([0.0, 0.1, 0.2, 0.8, 1.0, 1.45, 1.6, 1.9])
    frames = np.stack([np.full((32, 32, 3), 20 * i, np.uint8) for i in range(len(times))])
    data = encode_mp4(frames, 4.0, frame_times=times)
    video = load_video(data, fps=2.0, min_frames=2, max_frames=16)
    shown = [int(round(f.mean() / 20)) for f in video.frames]
    assert len(video.frames) == 4
    assert shown == [0, 2, 4, 5]  # at t=0.5 frame 2 (0.2 s) is still on screen
    assert video.audio is None


def test_video_audio_track_is_read_at_16k():
    frames = np.zeros((8, 32, 32, 3), np.uint8)
    data = encode_mp4(frames, 4.0, audio=tone(2.0), sample_rate=16000)
    video = load_video(data, 2.0, 2, 16, audio_rate=16000)
    assert video.audio is not None and abs(video.audio.numel() - 32000) < 4000
    assert float(video.audio.abs().max()) > 0.1


def test_corrupt_video_raises_media_error():
    with pytest.raises(MediaError, match="not a decodable video"):
        load_video(b"\x00\x00\x00\x18ftypmp42garbage" * 10, 2.0, 2, 16)


def float_wav(values: np.ndarray, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, values, sr, format="WAV", subtype="FLOAT")
    return buf.getvalue()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_audio_is_a_media_error(bad):
    wave = tone()
    wave[100] = bad
    with pytest.raises(MediaError, match=r"clip.wav: 1 non-finite values"):
        load_audio(float_wav(wave), 16000, "clip.wav")


def test_non_finite_float_image_is_a_media_error():
    arr = np.ones((8, 8), np.float32)
    arr[2, 3] = np.nan
    buf = io.BytesIO()
    Image.fromarray(arr, mode="F").save(buf, format="TIFF")
    with pytest.raises(MediaError, match="non-finite"):
        load_image(buf.getvalue(), "img.tif")


@pytest.mark.parametrize("fmt", ["WAV", "FLAC"])
@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_truncated_audio_is_a_media_error_or_shorter(fmt, keep):
    """A cut-off file either decodes to what survived or is a MediaError, never another error."""
    data = encode_audio(tone(seconds=2.0, sr=44100), 44100, fmt)
    try:
        wave = load_audio(data[: int(len(data) * keep)], 16000, "cut")
    except MediaError:
        return
    assert wave.numel() <= 32000 and bool(torch.isfinite(wave).all())
