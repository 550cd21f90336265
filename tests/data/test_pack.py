"""``omnitrain data pack``: manifest -> shards, bad lines reported, resumable, trainable."""

from __future__ import annotations

import io
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from omnitrain.cli import main
from omnitrain.data.build.demo import dtmf, image_of, reply_speech, video_of
from omnitrain.data.build.media_writers import encode_audio, encode_image
from omnitrain.data.build.pack import Packer, PackError, PackOptions
from omnitrain.data.pipeline import make_pipeline
from omnitrain.data.sample_lengths import LengthMeter
from omnitrain.registry import build
from omnitrain.run_config import compose_config
from tests.data.test_sample_builder import samples_of
from tests.helpers import smoke_overrides


def conv(content, reply="1 2", speech="reply.wav", **extra):
    assistant = {"role": "assistant", "content": [{"text": reply}]}
    if speech:
        assistant["speech"] = speech
    return {"turns": [{"role": "user", "content": content}, assistant], **extra}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """A manifest of good lines of every media type, plus the bad lines issue 4 lists."""
    import random

    root = tmp_path_factory.mktemp("raw")
    rng = random.Random(0)
    codec = build("codec", compose_config([]).codec)
    (root / "reply.wav").write_bytes(encode_audio(reply_speech([1, 2], codec), 16000))
    (root / "a.wav").write_bytes(encode_audio(dtmf([3, 4], rng), 16000))
    (root / "a.flac").write_bytes(encode_audio(dtmf([5], rng), 16000, "FLAC"))
    (root / "i.png").write_bytes(encode_image(image_of(1, 2, rng)))
    (root / "i.jpg").write_bytes(encode_image(image_of(3, 4, rng), "JPEG"))
    buf = io.BytesIO()
    Image.fromarray(image_of(5, 6, rng)).convert("CMYK").save(buf, format="JPEG")
    (root / "cmyk.jpg").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    Image.fromarray((np.arange(56 * 56).reshape(56, 56) * 20).astype(np.uint16)).save(buf, format="PNG")
    (root / "gray16.png").write_bytes(buf.getvalue())
    (root / "v.mp4").write_bytes(video_of(7, 8, rng)[0])
    (root / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (root / "empty.wav").write_bytes(b"")
    tokens = io.BytesIO()
    np.save(tokens, np.array([3, 3, 0, 9], dtype=np.int32))
    (root / "pre.codec.npy").write_bytes(tokens.getvalue())
    good = [
        conv([{"audio": "a.wav"}, {"text": "Which digits?"}], id="g1"),
        conv([{"audio": "a.flac"}, {"text": "Which digit?"}], id="g2"),
        conv([{"image": "i.png"}, {"text": "Shown?"}], id="g3"),
        conv([{"image": "i.jpg"}, {"text": "Shown?"}], id="g4"),
        conv([{"image": "cmyk.jpg"}, {"text": "CMYK?"}], id="g5"),
        conv([{"image": "gray16.png"}, {"text": "16 bit?"}], id="g6"),
        conv([{"video": "v.mp4", "use_audio": True}, {"text": "Seen, heard?"}], id="g7"),
        conv([{"text": "Say 1 2."}], id="g8"),
        conv([{"text": "Say 1 2."}], id="g9", speech=None),  # text-only reply
    ]
    good[7]["turns"][1]["codec"] = "pre.codec.npy"  # precomputed tokens are used as they are
    lines = [json.dumps(c).encode() for c in good]
    bad = {
        3: json.dumps(conv([{"audio": "missing.wav"}, {"text": "?"}])).encode(),
        5: json.dumps(conv([{"video": "corrupt.mp4"}, {"text": "?"}])).encode(),
        7: json.dumps(conv([{"audio": "empty.wav"}, {"text": "?"}])).encode(),
        9: b'{"turns": [{"role": "user", "content": [{"text": "caf' + b"\xe9" + b'"}]}]}',
        10: b"{not json",
    }
    for pos in sorted(bad):
        lines.insert(pos, bad[pos])
    path = root / "manifest.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, {p + 1 for p in bad}, len(good)


def test_pack_reports_bad_lines_and_keeps_going(manifest, tmp_path, capsys):
    path, bad_lines, n_good = manifest
    assert main(["data", "pack", str(path), str(tmp_path), "--shard-size", "20KB", "--prefix", "train"]) == 0
    out = capsys.readouterr().out
    assert f"{n_good} samples" in out and f"skipped {len(bad_lines)} line(s)" in out
    report = [json.loads(x) for x in (tmp_path / "train.skipped.jsonl").read_text().splitlines()]
    assert {r["line"] for r in report} == bad_lines
    reasons = " ".join(r["reason"] for r in report)
    for needle in ("missing.wav", "not a decodable video", "empty file", "not valid UTF-8", "not valid JSON"):
        assert needle in reasons
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["samples"] == n_good and len(index["shards"]) > 1
    # each sample's token count, as training would measure it under the config pack ran with
    meter = LengthMeter(compose_config([]))
    for shard in index["shards"]:
        assert shard["lengths_key"] == meter.key and len(shard["lengths"]) == shard["samples"]
        assert shard["lengths"] == meter(str(tmp_path / shard["name"])) and min(shard["lengths"]) > 0


def pack_and_stream(manifest_path, tmp_path, demo_dir, verify: bool) -> tuple[Counter, set]:
    """Pack the manifest into val shards and read them through the training pipeline:
    the skip counts and the keys of every sample that came through."""
    Packer(manifest_path, tmp_path / "shards", build("codec", compose_config([]).codec),
           PackOptions(shard_bytes=1 << 20, prefix="val", verify=verify)).run()
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, f"data.val_shards={tmp_path}/shards/val-*.tar",
                                         "data.batch_size=3"))
    skipped, keys = Counter(), set()
    for batch in make_pipeline(cfg, "val", 256):
        skipped.update(batch.skipped)
        keys.update(batch.keys)
    return skipped, keys


def test_packed_shards_train(manifest, tmp_path, demo_dir):
    path, _, n_good = manifest
    skipped, keys = pack_and_stream(path, tmp_path, demo_dir, verify=True)
    assert not skipped, "CMYK, 16-bit, flac, mp4+audio, precomputed tokens all decode"
    assert len(keys) == n_good


def _run(path, out, **kw):
    return Packer(path, out, build("codec", compose_config([]).codec), PackOptions(shard_bytes=20_000, **kw))


def test_precomputed_codec_tokens_are_packed_as_they_are(manifest, tmp_path):
    """A reply's precomputed ``codec`` tokens reach the shard unchanged (README: "used as
    they are"), not re-encoded from its speech or rewritten."""
    path, _, _ = manifest
    _run(path, tmp_path).run()
    given = (path.parent / "pre.codec.npy").read_bytes()
    packed = {}
    for shard in sorted(tmp_path.glob("shard-*.tar")):
        for members in samples_of(shard).values():
            conv = json.loads(members["json"])
            reply = conv["turns"][-1]
            if "codec" in reply:
                packed[conv["source"]["id"]] = members[reply["codec"]]
    assert packed["g8"] == given
    tokens = np.load(io.BytesIO(packed["g8"]))
    assert tokens.dtype == np.int32 and tokens.tolist() == [3, 3, 0, 9]


def test_rerun_resumes_after_the_last_finished_shard(manifest, tmp_path, monkeypatch):
    path, _, _ = manifest
    fresh = _run(path, tmp_path / "fresh").run()
    out = tmp_path / "resumed"
    calls = {"n": 0}
    real_close = __import__("omnitrain.data.build.shard_writer", fromlist=["x"]).ShardWriter.close

    def crash_on_third(self):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed while packing")
        return real_close(self)

    monkeypatch.setattr("omnitrain.data.build.shard_writer.ShardWriter.close", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        _run(path, out).run()
    monkeypatch.undo()
    finished = sorted(p.name for p in out.glob("*.tar"))
    assert len(finished) == 2
    built = []
    real_sample = Packer.sample
    monkeypatch.setattr(Packer, "sample", lambda self, raw, n: built.append(n) or real_sample(self, raw, n))
    result = _run(path, out).run()
    assert min(built) == result["resumed_from_line"] > 0  # finished shards' lines were not read again
    names = sorted(p.name for p in out.glob("*.tar"))
    assert names == sorted(p.name for p in (tmp_path / "fresh").glob("*.tar"))
    for name in names:
        assert (out / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()
    assert result["skipped"] == fresh["skipped"]


def test_a_changed_manifest_is_not_mixed_into_old_shards(manifest, tmp_path):
    path, _, _ = manifest
    _run(path, tmp_path).run()
    other = tmp_path / "other.jsonl"
    other.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(PackError, match="another manifest"):
        Packer(other, tmp_path, build("codec", compose_config([]).codec), PackOptions(shard_bytes=20_000)).run()


def test_missing_manifest_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "pack", str(tmp_path / "nope.jsonl"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_unverified_bad_media_is_skipped_and_counted_in_training(manifest, tmp_path, demo_dir):
    """Packed without the decode check, a corrupt mp4 and a zero-length wav reach the
    shards; training skips and counts them instead of stopping."""
    path, bad_lines, n_good = manifest
    skipped, keys = pack_and_stream(path, tmp_path, demo_dir, verify=False)
    assert skipped["MediaError"] >= 2  # corrupt.mp4 and empty.wav, counted (at least once each)
    assert len(keys) == n_good
