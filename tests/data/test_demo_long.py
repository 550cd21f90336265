"""The long demo profile: real lengths read back from the decoded shards, and every
sample goes through the pipeline (nothing skipped) and trains."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from omnitrain.cli import main
from omnitrain.data.build.demo_long import WORDS, LongSizes, make_long_demo
from omnitrain.data.media import load_audio, load_image, load_video
from omnitrain.data.pipeline import make_pipeline
from omnitrain.data.skips import SKIPS
from omnitrain.data.video_readers import choose_reader, open_video
from omnitrain.registry import build
from omnitrain.run_config import compose_config
from tests.helpers import smoke_overrides

QWEN_PLUGINS = ["audio_encoder=whisper_audio", "vision_encoder=qwen_vit", "talker=dual_track",
                "dit=flow_dit", "position=tmrope"]


@pytest.fixture(scope="module")
def long_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo_long")
    codec = build("codec", compose_config(["recipe=smoke"]).codec)
    make_long_demo(out, codec, LongSizes(train=8, val=4, per_shard=4), seed=0)
    return out


def samples(directory: Path) -> list[dict]:
    """Every sample of every shard, members grouped by key."""
    out: dict[str, dict] = {}
    for shard in sorted(directory.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                key, _, name = m.name.partition(".")
                out.setdefault(key, {"__key__": key})[name] = tar.extractfile(m).read()
    return list(out.values())


def conversation(sample: dict) -> dict:
    return json.loads(sample["json"])


def media(sample: dict, kind: str) -> bytes:
    (name,) = [p[kind] for p in conversation(sample)["turns"][0]["content"] if kind in p]
    return sample[name]


def of_kind(directory: Path, kind: str) -> list[dict]:
    found = [s for s in samples(directory) if conversation(s)["meta"]["kind"] == kind]
    assert found, f"no {kind} sample written"
    return found


def test_every_kind_is_written_in_each_block_of_four(long_dir):
    kinds = [conversation(s)["meta"]["kind"] for s in samples(long_dir) if s["__key__"].startswith("train")]
    assert len(kinds) == 8 and sorted(kinds[:4]) == sorted(kinds[4:]) == ["audio", "image", "text", "video"]


def test_audio_lasts_10_to_30_seconds(long_dir):
    for s in of_kind(long_dir, "audio"):
        seconds = load_audio(media(s, "audio"), 16000).numel() / 16000
        assert 10.0 <= seconds <= 30.0, (s["__key__"], seconds)


def test_images_are_448_square(long_dir):
    for s in of_kind(long_dir, "image"):
        assert load_image(media(s, "image")).shape == (448, 448, 3)


def test_video_is_10_s_at_2_fps_or_more_with_its_audio_track(long_dir):
    for s in of_kind(long_dir, "video"):
        data = media(s, "video")
        stamps = open_video(data, choose_reader()).timestamps()
        seconds = float(stamps[-1] + (stamps[-1] - stamps[-2]))
        assert abs(seconds - 10.0) < 0.3 and len(stamps) / seconds >= 2.0, (len(stamps), seconds)
        video = load_video(data, 2.0, 1, 1000, audio_rate=16000)
        assert video.frames.shape == (20, 252, 448, 3)  # 10 s at 2 fps, sampled by timestamp
        track = video.audio.numpy()
        assert abs(len(track) / 16000 - 10.0) < 0.2 and np.abs(track).max() > 0.1  # DTMF, not silence


def test_replies_are_100_to_400_tokens_and_their_speech_says_every_digit(long_dir):
    cfg = compose_config(["recipe=smoke"])
    tok, codec = build("tokenizer", cfg.tokenizer), build("codec", cfg.codec)
    for s in samples(long_dir):
        conv = conversation(s)
        reply = conv["turns"][1]["content"][0]["text"]
        assert 100 <= len(tok.encode(reply)) <= 400, (s["__key__"], reply)
        spoken = [WORDS.index(w.strip(".:")) for w in reply.split() if w.strip(".:") in WORDS]
        assert spoken == conv["meta"]["digits"]
        codes = np.load(io.BytesIO(s["reply.codec.npy"]))
        wave = load_audio(s["reply.wav"], codec.sample_rate)
        # the demo voice: 10 codec frames per digit, the last one without its 2-frame pause
        assert len(codes) == int(wave.numel() * codec.frame_rate / codec.sample_rate) == 10 * len(spoken) - 2
        assert (codec.encode(wave).numpy() == codes).mean() > 0.95  # the codes are of this wav


@pytest.mark.parametrize("plugins", [[], QWEN_PLUGINS], ids=["baseline", "qwen"])
def test_one_batch_holds_every_sample_at_full_size(long_dir, tmp_path, plugins):
    cfg = compose_config([*smoke_overrides(long_dir, tmp_path / "run"), "data=demo_long",
                          f"data.train_shards={long_dir}/train-*.tar", f"data.val_shards={long_dir}/*.tar",
                          "data.batch_size=12", *plugins])
    tok = build("tokenizer", cfg.tokenizer)
    SKIPS.drain()  # the process-wide counter: nothing another test left behind
    batch = next(iter(make_pipeline(cfg, "val", tok.special_id("pad"))))
    assert sorted(k.rpartition(":")[2] for k in batch.keys) == sorted(s["__key__"] for s in samples(long_dir))
    assert batch.skipped == {}
    grids = {tuple(g) for g in batch.vision_grids.tolist()}
    assert (1, 32, 32) in grids and (10, 18, 32) in grids  # 448x448 images, 20 frames of 448x252: not shrunk
    assert batch.audio_lengths.max() >= 1000 and batch.input_ids.shape[1] > 1500


def test_max_tokens_skips_long_samples_and_counts_them(long_dir, tmp_path):
    cfg = compose_config([*smoke_overrides(long_dir, tmp_path / "run"), "data=demo_long",
                          f"data.val_shards={long_dir}/*.tar", "data.batch_size=4", "data.max_tokens=1024"])
    SKIPS.drain()
    batch = next(iter(make_pipeline(cfg, "val", build("tokenizer", cfg.tokenizer).special_id("pad"))))
    assert batch.skipped.get("SampleError", 0) >= 1  # a video (~1,900 tokens) is among the first 4


def test_trains_with_qwen_plugins_and_token_batches(long_dir, tmp_path):
    run = tmp_path / "run"
    assert main(["train", *smoke_overrides(long_dir, run, "data=demo_long", f"data.train_shards={long_dir}/train-*.tar",
                                           f"data.val_shards={long_dir}/val-*.tar", "trainer.max_steps=1",
                                           "data.batching=tokens", "data.pack_length=4096", "data.rows_per_batch=1",
                                           "data.budget_buffer=4", *QWEN_PLUGINS)]) == 0
    assert (run / "checkpoints" / "last.ckpt").exists()


def test_cli_profile_long_is_deterministic_per_seed(long_dir, tmp_path):
    out = tmp_path / "long"
    assert main(["data", "demo", str(out), "--profile", "long", "--train", "2", "--val", "1"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["profile"] == "long" and index["samples"] == 3 and not (out / "heldout").exists()
    # the same seed draws the same first samples, whatever the counts and shard sizes
    first = {s["__key__"]: s for s in samples(long_dir)}
    for s in samples(out):
        if s["__key__"].startswith("train"):
            assert s == first[s["__key__"]]
