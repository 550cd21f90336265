"""Media encode/decode round trips, on real encoded bytes."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from omnitrain.data.build.media_writers import encode_audio, encode_image, encode_mp4
from omnitrain.data.media import MediaError, load_audio, load_image, load_video, why


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


# --- what a user reads when media is bad (issue 26: mutation survivors) ---

PASSWD = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


def test_error_text_never_quotes_the_file():
    """decord's 'ERROR opening: <the file's text>' must not copy a non-media file into logs."""
    exc = RuntimeError("ERROR opening: root:x:0:0:root:/root:/bin/bash")
    assert why(exc, PASSWD) == "RuntimeError"


def test_error_text_quoting_only_in_its_last_12_characters_is_caught():
    """The last 12-character window of the message counts too."""
    assert why(RuntimeError("ERROR opening: abcdefghijkl"), b"abcdefghijkl") == "RuntimeError"


def test_error_text_keeps_a_decoder_message_on_one_line():
    """A message that quotes nothing is kept, its whitespace collapsed to single spaces."""
    exc = ValueError("moov atom not found\n   at offset 12")
    assert why(exc, b"\x00\x00\x00\x18ftypmp42") == "ValueError: moov atom not found at offset 12"


def test_error_text_keeps_a_short_message_even_if_the_file_holds_it():
    """Under 12 characters is too short to leak a file: 'EOF' stays in the message."""
    assert why(ValueError("EOF"), b"xxEOFxx") == "ValueError: EOF"
    assert why(ValueError(), b"xx") == "ValueError"


def test_bad_image_message_names_the_file_and_the_decoder_error():
    with pytest.raises(MediaError, match=r"^a\.png: not a decodable image \(UnidentifiedImageError: cannot "):
        load_image(b"plain text, not an image at all", "a.png")


def test_empty_audio_message_says_empty():
    with pytest.raises(MediaError, match=r"^clip\.wav: empty file \(0 bytes\)$"):
        load_audio(b"", 16000, "clip.wav")


def test_audio_with_no_samples_is_a_media_error():
    """A valid WAV header with 0 frames: an empty tensor would reach the model otherwise."""
    with pytest.raises(MediaError, match=r"^clip\.wav: no audio samples$"):
        load_audio(float_wav(np.zeros(0, np.float32)), 16000, "clip.wav")


def test_mono_wav_and_flac_need_no_ffmpeg(monkeypatch):
    """wav/flac go through soundfile: they decode with PyAV broken or missing."""
    def no_pyav(*_):
        raise ImportError("no av")

    monkeypatch.setattr("omnitrain.data.media.pyav_audio", no_pyav)
    for fmt in ("WAV", "FLAC"):
        wave = load_audio(encode_audio(tone(), 16000, fmt), 16000)
        assert wave.shape == (8000,)
        assert np.abs(wave.numpy() - tone()).max() < 1e-4  # measured 3.0e-5 (WAV), 1.5e-5 (FLAC)


def test_m4a_audio_is_read_through_pyav():
    """AAC in an mp4 container (what phones record): soundfile cannot, PyAV does."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone(2.0)[None], format="fltp", layout="mono")
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    wave = load_audio(buf.getvalue(), 16000, "voice.m4a")
    # AAC adds priming and pads its last frame
    assert wave.dtype == torch.float32 and abs(wave.numel() - 32000) < 4000  # measured 1792
    assert abs(float(wave.abs().max()) - 0.3) < 0.05  # the tone's amplitude; measured 0.011


def single_frame_mp4() -> bytes:
    return encode_mp4(np.full((1, 32, 32, 3), 60, np.uint8), 2.0)


def test_a_one_frame_video_lasts_one_sampling_step():
    """One frame at t=0 lasts 1/fps: at 2 fps that is one sampled frame."""
    video = load_video(single_frame_mp4(), fps=2.0, min_frames=1, max_frames=16)
    assert len(video.frames) == 1 and video.times.tolist() == [0.0] and video.fps == 2.0


def test_a_one_frame_video_padded_to_min_frames_spreads_them_over_its_duration():
    """min_frames=2 over a 0.5 s clip: sampled at 4 fps, both slots show the one frame."""
    video = load_video(single_frame_mp4(), fps=2.0, min_frames=2, max_frames=16)
    assert video.times.tolist() == [0.0, 0.25] and video.fps == 4.0
    assert len(video.frames) == 2 and all(int(f.mean()) in (59, 60, 61) for f in video.frames)


def test_a_two_frame_video_lasts_until_its_last_gap_ends():
    """Frames at 0 and 0.3 s: the clip lasts 0.6 s (last gap repeated), 1.2 steps at 2 fps -> 1."""
    frames = np.stack([np.full((32, 32, 3), 20 * i, np.uint8) for i in range(2)])
    data = encode_mp4(frames, 4.0, frame_times=np.array([0.0, 0.3]))
    video = load_video(data, fps=2.0, min_frames=1, max_frames=16)
    assert len(video.frames) == 1 and video.fps == 2.0


VFR_TIMES = np.array([0.0, 0.1, 0.2, 0.8, 1.0, 1.45, 1.6, 1.9])  # lasts 1.9 + 0.3 = 2.2 s


def vfr_clip() -> bytes:
    frames = np.stack([np.full((32, 32, 3), 20 * i, np.uint8) for i in range(len(VFR_TIMES))])
    return encode_mp4(frames, 4.0, frame_times=VFR_TIMES)


def test_max_frames_lowers_the_rate_over_the_whole_clip():
    """2 fps over 2.2 s wants 4 frames; max_frames=2 samples at 2 / 2.2 fps: t = 0, 1.1 s."""
    video = load_video(vfr_clip(), fps=2.0, min_frames=1, max_frames=2)
    assert video.fps == pytest.approx(2 / 2.2, rel=0, abs=3e-7)  # measured 3.0e-8 (float32 stamps)
    assert np.allclose(video.times, [0.0, 1.1], rtol=0, atol=3e-7)  # measured 4e-8
    assert [int(round(f.mean() / 20)) for f in video.frames] == [0, 4]


def test_min_frames_raises_the_rate_over_the_whole_clip():
    """1 fps over 2.2 s wants 2 frames; min_frames=6 samples every 2.2 / 6 s."""
    video = load_video(vfr_clip(), fps=1.0, min_frames=6, max_frames=16)
    assert video.fps == pytest.approx(6 / 2.2, rel=0, abs=1e-6)  # measured 8.9e-8
    # on screen at 0, .37, .73, 1.1, 1.47, 1.83 s
    assert [int(round(f.mean() / 20)) for f in video.frames] == [0, 2, 2, 4, 5, 6]


def test_a_video_without_audio_says_so_when_audio_is_asked():
    with pytest.raises(MediaError, match=r"^v\.mp4: has no readable audio track \(ValueError: no audio stream"):
        load_video(vfr_clip(), 2.0, 1, 16, audio_rate=16000, what="v.mp4", reader="pyav")


class NanAudioReader:
    """A reader whose audio track decodes to a NaN (a float PCM track can hold one)."""

    def timestamps(self):
        return np.array([0.0, 0.5])

    def frames(self, indices):
        return np.zeros((len(indices), 4, 4, 3), np.uint8)

    def audio(self, sample_rate):
        return np.array([0.0, np.nan, 0.1], np.float32)


def test_non_finite_video_audio_is_a_media_error(monkeypatch):
    monkeypatch.setattr("omnitrain.data.media.open_video", lambda data, backend: NanAudioReader())
    with pytest.raises(MediaError, match=r"^v\.mp4 audio track: 1 non-finite values"):
        load_video(b"x", 2.0, 1, 16, audio_rate=16000, what="v.mp4")
