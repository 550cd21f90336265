"""``omnitrain data encode IN OUT --codec SPEC`` and ``--codec`` of ``data demo`` / ``data pack``:
real demo shards made with the pitch codec re-encoded with ``pitch_groups`` (2 groups) and with
an exported codec folder; every member but the codes byte for byte, the codes what the new
codec makes of each reply's speech, OUT read by the training pipeline, bad samples skipped
and listed by key, IN never touched."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from omnitrain.cli import main
from omnitrain.data.build.codec_spec import codec_overrides
from omnitrain.data.build.demo import reply_speech
from omnitrain.data.build.encode import Encoder
from omnitrain.data.build.media_writers import encode_audio
from omnitrain.data.media import load_audio
from omnitrain.data.pipeline import make_pipeline
from omnitrain.name_registry import RegistryError
from omnitrain.registry import build
from omnitrain.run_config import compose_config

GROUPS2 = ["recipe=qwen3_omni_smoke", "codec.groups=2"]  # a config that trains on codes of 2 groups


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def members(shard: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(shard) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isreg()]


def samples(shard: Path) -> dict[str, dict[str, bytes]]:
    out: dict[str, dict[str, bytes]] = {}
    for name, data in members(shard):
        key, suffix = name.split(".", 1)
        out.setdefault(key, {})[suffix] = data
    return out


def codes_of(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


@pytest.fixture(scope="module")
def pitch_shards(tmp_path_factory) -> Path:
    """The demo with the pitch codec (one code a frame), uneven shards: 10, 10, 4 and 8."""
    out = tmp_path_factory.mktemp("pitch_demo")
    assert main(["data", "demo", str(out), "--codec", "pitch", "--train", "24", "--val", "8", "--heldout", "0",
                 "--per-shard", "10"]) == 0
    return out


@pytest.fixture(scope="module")
def encoded(pitch_shards, tmp_path_factory):
    """IN re-encoded with ``--codec pitch_groups`` (2 groups): (IN, OUT, IN's digests before, stdout)."""
    before = digests(pitch_shards)
    out = tmp_path_factory.mktemp("encoded") / "out"
    capture = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(capture):
        assert main(["data", "encode", str(pitch_shards), str(out), "--codec", "pitch_groups", *GROUPS2]) == 0
    return pitch_shards, out, before, capture.getvalue()


def test_every_member_copied_and_codes_made_anew_by_the_new_codec(encoded):
    src, out, before, printed = encoded
    assert digests(src) == before  # IN untouched
    assert "wrote 32 samples in 4 shards" in printed and "skipped 0" in printed
    codec = build("codec", {"name": "pitch_groups", "groups": 2})
    shards = sorted(p.name for p in src.glob("*.tar"))
    assert shards == sorted(p.name for p in out.glob("*.tar")) == [
        "train-000000.tar", "train-000001.tar", "train-000002.tar", "val-000000.tar"]
    spoken = 0
    for name in shards:
        old, new = members(src / name), members(out / name)
        assert [n for n, _ in old] == [n for n, _ in new]  # the same members in the same order
        for (member, a), (_, b) in zip(old, new, strict=True):
            if not member.endswith(".codec.npy"):
                assert a == b, member
        for key, sample in samples(out / name).items():
            turn = json.loads(sample["json"])["turns"][-1]
            codes = codes_of(sample[turn["codec"]])
            want = codec.encode(load_audio(sample[turn["speech"]], codec.sample_rate)).numpy()
            assert codes.dtype == np.int32 and codes.ndim == 2 and codes.shape[1] == 2, key
            assert np.array_equal(codes, want), key
            assert codes_of(samples(src / name)[key][turn["codec"]]).ndim == 1  # IN had one group
            spoken += 1
    assert spoken == 32
    assert (out / "skipped.jsonl").read_text() == ""
    assert (out / "heldout" / "manifest.jsonl").is_file()  # the prompts, copied
    old_index, new_index = (json.loads((d / "index.json").read_text()) for d in (src, out))
    assert new_index["samples"] == 32 and new_index["encoded"]["codec"]["groups"] == 2
    for a, b in zip(old_index["shards"], new_index["shards"], strict=True):
        assert (a["name"], a["samples"], a["lengths_key"], a["lengths"]) == (
            b["name"], b["samples"], b["lengths_key"], b["lengths"])  # token lengths do not change with the codec
        assert b["bytes"] == (out / b["name"]).stat().st_size


def test_the_training_pipeline_reads_the_encoded_shards(encoded):
    _, out, _, _ = encoded
    cfg = compose_config([*GROUPS2, f"data.train_shards={out}/train-*.tar", f"data.val_shards={out}/val-*.tar",
                          "data.batch_size=8"])
    keys, skipped = [], {}
    for batch in make_pipeline(cfg, "val", 256):
        keys += batch.keys
        skipped.update(batch.skipped)
        assert batch.codec_tokens.shape[-1] == 2 and int(batch.codec_mask.sum()) > 0
    assert not skipped and len(keys) == 8


def rewrite(shard: Path, change: dict[str, bytes]) -> None:
    """``shard`` with the members named in ``change`` holding other bytes."""
    tmp = shard.with_name("rewrite.tmp")
    with tarfile.open(shard) as src, tarfile.open(tmp, "w") as dst:
        for info in src:
            data = change.get(info.name, src.extractfile(info).read())
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    tmp.replace(shard)


def test_unreadable_samples_are_skipped_listed_and_counted(pitch_shards, tmp_path, capsys):
    src = tmp_path / "in"
    shutil.copytree(pitch_shards, src)
    keys = list(samples(src / "train-000001.tar"))
    garbled, bad_json = keys[3], keys[9]  # the shard's last sample too
    rewrite(src / "train-000001.tar", {f"{garbled}.reply.wav": b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(300),
                                       f"{bad_json}.json": b'{"turns": [{"role": '})
    # the val shard cut off in the middle of a member: the sample it holds is lost, the rest after it too
    val = src / "val-000000.tar"
    with tarfile.open(val) as tar:
        infos = [m for m in tar if m.isreg()]
    cut_in = next(m for m in infos if m.name.endswith(".reply.wav") and infos.index(m) > len(infos) // 2)
    val.write_bytes(val.read_bytes()[: cut_in.offset_data + cut_in.size // 2])
    cut_key = cut_in.name.split(".")[0]
    kept_val = [k for k in samples_before(infos, cut_key)]
    before = digests(src)
    out = tmp_path / "out"
    assert main(["data", "encode", f"{src}/*.tar", str(out), "--codec", "pitch"]) == 0
    printed = capsys.readouterr().out
    assert digests(src) == before
    lost = 8 - len(kept_val) - 1  # the val samples after the one cut in two
    assert f"wrote {32 - 2 - 8 + len(kept_val)} samples" in printed
    assert f"skipped 3, and {lost} more in 1 shard(s) that could be read only in part" in printed
    report = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    (cut,) = [r for r in report if r["key"] is None]
    assert cut["shard"] == "val-000000.tar" and cut["lost"] == lost and "cut short" in cut["reason"]
    by_key = {r["key"]: r for r in report if r["key"]}
    assert set(by_key) == {garbled, bad_json, cut_key}
    assert by_key[garbled]["shard"] == "train-000001.tar" and "speech 'reply.wav'" in by_key[garbled]["reason"]
    assert "not valid JSON" in by_key[bad_json]["reason"]
    assert by_key[cut_key]["shard"] == "val-000000.tar" and "lost" in by_key[cut_key]["reason"]
    assert list(samples(out / "train-000001.tar")) == [k for k in keys if k not in (garbled, bad_json)]
    assert list(samples(out / "val-000000.tar")) == kept_val
    # the copied token lengths follow the samples kept
    old = {s["name"]: s for s in json.loads((pitch_shards / "index.json").read_text())["shards"]}
    new = {s["name"]: s for s in json.loads((out / "index.json").read_text())["shards"]}
    assert new["train-000001.tar"]["lengths"] == [n for k, n in zip(keys, old["train-000001.tar"]["lengths"],
                                                                     strict=True) if k not in (garbled, bad_json)]
    assert new["train-000001.tar"]["samples"] == 8 and new["val-000000.tar"]["samples"] == len(kept_val)


def samples_before(infos: list[tarfile.TarInfo], key: str) -> list[str]:
    """The keys of the samples whose members all come before ``key``'s."""
    keys = list(dict.fromkeys(m.name.split(".")[0] for m in infos))
    return keys[: keys.index(key)]


def test_speech_at_another_rate_is_resampled_to_the_codec_s(pitch_shards, tmp_path):
    """A codec at 8 kHz encodes the 16 kHz replies resampled (``media.load_audio``)."""
    codec = build("codec", {"name": "pitch", "sample_rate": 8000, "hop_length": 320})
    shard = pitch_shards / "train-000002.tar"
    result = Encoder([shard], tmp_path / "out", codec).run()
    assert result.written == 4 and not result.skipped
    for key, sample in samples(tmp_path / "out" / shard.name).items():
        wave16 = load_audio(sample["reply.wav"], 16000)
        want = codec.encode(load_audio(sample["reply.wav"], 8000))
        assert np.array_equal(codes_of(sample["reply.codec.npy"]), want.numpy()), key
        assert len(want) == len(wave16) // 640  # the same 40 ms frames, half the samples each


def test_out_must_not_overwrite_in_nor_a_non_empty_folder(pitch_shards, tmp_path, capsys):
    before = digests(pitch_shards)
    assert main(["data", "encode", str(pitch_shards), str(pitch_shards), "--codec", "pitch"]) == 2
    assert "would overwrite" in capsys.readouterr().err
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale-000009.tar").write_bytes(b"old")
    assert main(["data", "encode", f"{pitch_shards}/train-000002.tar", str(out), "--codec", "pitch"]) == 2
    assert "not empty" in capsys.readouterr().err and (out / "stale-000009.tar").exists()
    assert main(["data", "encode", f"{pitch_shards}/train-000002.tar", str(out), "--codec", "pitch",
                 "--overwrite", "--no-lengths"]) == 0
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-000002.tar"]  # the stale shard went
    assert members(out / "train-000002.tar") == members(pitch_shards / "train-000002.tar")  # same codec, same bytes
    assert digests(pitch_shards) == before


# ---- --codec SPEC -------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported_codec_folder(tmp_path_factory) -> Path:
    """What ``omnitrain export`` of a codec run gives: codec.json naming its plugin, beside
    the torch.export programs the ``exported`` codec reads."""
    from tests.plugins.test_exported_codec import export_tiny_codec

    return export_tiny_codec(tmp_path_factory.mktemp("codec_bundle"), plugin="exported")


def test_codec_spec_forms(exported_codec_folder, tmp_path, monkeypatch):
    folder = exported_codec_folder
    assert codec_overrides("pitch") == ["codec=pitch"]
    assert codec_overrides(str(folder)) == ["codec=exported", f"codec.path={folder.resolve()}"]
    assert codec_overrides(f"exported:{folder}") == ["codec=exported", f"codec.path={folder.resolve()}"]
    monkeypatch.chdir(folder.parent)  # a relative folder and path come out absolute
    assert codec_overrides(f"./{folder.name}")[1] == f"codec.path={folder.resolve()}"
    assert codec_overrides(f"exported:{folder.name}")[1] == f"codec.path={folder.resolve()}"
    (folder.parent / "pitch").mkdir(exist_ok=True)  # a registered name stays a name
    assert codec_overrides("pitch") == ["codec=pitch"]


@pytest.mark.parametrize("spec,needles", [
    ("pitch_grups", ["unknown codec plugin 'pitch_grups'", "Did you mean 'pitch_groups'", "pitch, pitch_groups"]),
    ("nope:/tmp", ["unknown codec plugin 'nope'", "exported"]),
    ("pitch:/tmp", ["codec 'pitch' reads no path", "--codec pitch"]),
    ("exported:", ["no path after 'exported:'"]),
    ("./no/such/folder", ["no such folder", "NAME:PATH"]),
])
def test_codec_spec_errors_say_what_to_give(spec, needles):
    with pytest.raises(RegistryError) as err:
        codec_overrides(spec)
    for needle in needles:
        assert needle in str(err.value), str(err.value)


@pytest.mark.parametrize("codec_json,needles", [
    (None, ["has no codec.json", "\"plugin\"", "NAME:"]),
    ({"vocab_size": 24}, ["has no \"plugin\"", "exported"]),
    ({"plugin": "exportd"}, ["unknown codec plugin 'exportd'", "Did you mean 'exported'"]),
    ("{not json", ["not valid JSON"]),
])
def test_a_codec_folder_must_name_its_plugin(codec_json, needles, tmp_path):
    if codec_json is not None:
        text = codec_json if isinstance(codec_json, str) else json.dumps(codec_json)
        (tmp_path / "codec.json").write_text(text)
    with pytest.raises(RegistryError) as err:
        codec_overrides(str(tmp_path))
    for needle in needles:
        assert needle in str(err.value), str(err.value)


def test_an_unknown_codec_exits_2_with_the_registered_ones(pitch_shards, tmp_path, capsys):
    assert main(["data", "encode", str(pitch_shards), str(tmp_path / "out"), "--codec", "pich"]) == 2
    err = capsys.readouterr().err
    assert "unknown codec plugin 'pich'" in err and "pitch_groups" in err
    assert not (tmp_path / "out").exists()


def test_encode_into_an_exported_codec_folder(pitch_shards, exported_codec_folder, tmp_path, capsys):
    """``--codec FOLDER``: the ``exported`` codec reads the folder's programs (its codec.json's
    "plugin" key is ignored by the codec itself); one group, so codes (n,)."""
    out = tmp_path / "out"
    assert main(["data", "encode", f"{pitch_shards}/val-*.tar", str(out), "--codec", str(exported_codec_folder)]) == 0
    assert "wrote 8 samples in 1 shards" in capsys.readouterr().out
    codec = build("codec", {"name": "exported", "path": str(exported_codec_folder)})
    for key, sample in samples(out / "val-000000.tar").items():
        codes = codes_of(sample["reply.codec.npy"])
        want = codec.encode(load_audio(sample["reply.wav"], 16000)).numpy()
        assert codes.shape == want.shape and codes.ndim == 1 and np.array_equal(codes, want), key
    index = json.loads((out / "index.json").read_text())
    assert index["encoded"]["codec"] == {"name": "exported", "path": str(exported_codec_folder.resolve())}


def test_pack_takes_codec_too(tmp_path):
    codec = build("codec", {"name": "pitch"})
    (tmp_path / "reply.wav").write_bytes(encode_audio(reply_speech([1, 2], codec), 16000))
    line = {"turns": [{"role": "user", "content": [{"text": "Say 1 2."}]},
                      {"role": "assistant", "content": [{"text": "1 2"}], "speech": "reply.wav"}]}
    (tmp_path / "m.jsonl").write_text(json.dumps(line) + "\n")
    out = tmp_path / "shards"
    assert main(["data", "pack", str(tmp_path / "m.jsonl"), str(out), "--codec", "pitch_groups", *GROUPS2]) == 0
    (sample,) = samples(out / "shard-000000.tar").values()
    assert codes_of(sample["reply_1.codec.npy"]).shape[1:] == (2,)
