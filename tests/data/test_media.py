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
    # 16-bit samples: one step is 3.1e-5
    assert np.abs(wave.numpy() - tone()).max() < 1e-4  # measured 3.0e-5 (WAV), 1.5e-5 (FLAC)


def float_wav(values: np.ndarray, sr: int = 16000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, values, sr, format="WAV", subtype="FLOAT")
    return buf.getvalue()


@pytest.mark.parametrize("channels", [2, 3])
def test_multichannel_audio_is_the_mean_of_its_channels(channels):
    """Different signals per channel: mono is their average, not their sum or one channel."""
    signals = [tone(hz=440), -0.5 * tone(hz=1000), tone(hz=150)][:channels]
    wave = load_audio(float_wav(np.stack(signals, axis=1)), 16000)
    want = np.mean(np.stack(signals).astype(np.float64), axis=0)
    assert wave.shape == want.shape
    assert np.abs(wave.numpy() - want).max() < 6e-8  # measured 7.5e-9 (2 ch), 1.7e-8 (3 ch): float32 sums


def test_audio_is_resampled_to_the_target_rate():
    """A 440 Hz sine at 44.1 kHz is the same sine at 16 kHz: same length in seconds, same
    frequency, same amplitude, compared with the sine written out at 16 kHz."""
    wave = load_audio(float_wav(tone(sr=44100), 44100), 16000).numpy()
    assert wave.shape == (8000,)
    want = 0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)
    # the sinc filter's edges are cut off: its first and last few samples ring
    gap = np.abs(wave - want)[16:-16].max()
    assert gap < 2e-4  # measured 6.8e-5


@pytest.mark.parametrize("data", [b"", b"RIFF\x00\x00not really a wav file at all"])
def test_bad_audio_raises_media_error(data):
    with pytest.raises(MediaError):
        load_audio(data, 16000, "clip.wav")


def test_png_roundtrip_is_exact():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :15] = (200, 10, 10)
    assert np.array_equal(load_image(encode_image(rgb, "PNG")), rgb)


def test_jpeg_roundtrip_keeps_the_colours():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :15] = (200, 10, 10)
    out = load_image(encode_image(rgb, "JPEG")).astype(int)
    assert out.shape == (20, 30, 3)
    away_from_the_edge = np.r_[0:12, 18:30]  # JPEG rings at the colour edge (cols 12-17)
    gap = np.abs(out[:, away_from_the_edge] - rgb[:, away_from_the_edge]).max()
    assert gap <= 4  # measured 2


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def palette_image() -> Image.Image:
    img = Image.frombytes("P", (4, 1), bytes([0, 1, 2, 1]))
    img.putpalette([10, 20, 30, 200, 100, 50, 0, 255, 0])
    return img


# PIL's conversions to RGB, worked by hand:
#   CMYK: each channel (255 - K) - X * (255 - K) / 255, i.e. (255 - X)(255 - K) / 255
#   P: the palette entry of each index;  LA: (L, L, L), alpha dropped
IMAGE_MODES = {
    "CMYK": (
        lambda: Image.frombytes("CMYK", (5, 1), bytes(
            [0, 255, 55, 0, 100, 0, 0, 0, 0, 0, 0, 255, 0, 255, 0, 51, 0, 0, 0, 0])),
        "TIFF",
        [(255, 0, 200), (155, 255, 255), (0, 0, 0), (204, 0, 204), (255, 255, 255)],
    ),
    "P": (palette_image, "PNG", [(10, 20, 30), (200, 100, 50), (0, 255, 0), (200, 100, 50)]),
    "LA": (
        lambda: Image.frombytes("LA", (3, 1), bytes([77, 0, 200, 128, 3, 255])),
        "PNG",
        [(77, 77, 77), (200, 200, 200), (3, 3, 3)],
    ),
}


@pytest.mark.parametrize("mode", sorted(IMAGE_MODES))
def test_image_modes_become_rgb(mode):
    """Known pixels in each mode come out as the RGB that PIL's conversion defines."""
    make, fmt, want = IMAGE_MODES[mode]
    data = encoded(make(), fmt)
    assert Image.open(io.BytesIO(data)).mode == mode  # the file really holds that mode
    out = load_image(data)
    assert out.dtype == np.uint8
    assert out.tolist() == [[list(px) for px in want]]


def test_16bit_grey_is_rescaled_not_clipped():
    grey = (np.arange(128).reshape(8, 16) * 500).astype(np.uint16)  # 0 .. 63500
    data = encoded(Image.fromarray(grey), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    out = load_image(data)
    want = (grey.astype(np.int64) * 255 // 63500).astype(np.uint8)  # the peak becomes 255
    assert out.shape == (8, 16, 3) and np.array_equal(out, np.stack([want] * 3, axis=-1))


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
    # AAC adds priming and pads its last frame: 33792 samples for 32000
    assert video.audio is not None and abs(video.audio.numel() - 32000) < 4000  # measured 1792
    assert abs(float(video.audio.abs().max()) - 0.3) < 0.05  # the tone's amplitude; measured 0.011


def test_corrupt_video_raises_media_error():
    with pytest.raises(MediaError, match="not a decodable video"):
        load_video(b"\x00\x00\x00\x18ftypmp42garbage" * 10, 2.0, 2, 16)


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
