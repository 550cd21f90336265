"""Shards -> batches, and what happens to bad input: clear errors or skip-and-count."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter

import pytest
import torch

from omnitrain.data.build.shard_writer import ShardWriter
from omnitrain.data.pipeline import make_pipeline
from omnitrain.data.shards import ShardError, resolve_shards
from omnitrain.run_config import compose_config
from tests.helpers import SMALL_DEMO, smoke_overrides

PAD = 256  # byte tokenizer's pad id


def run_val_pipeline(cfg, world: int = 1, rank: int = 0):
    batches = list(make_pipeline(cfg, "val", PAD, world=world, rank=rank))
    skipped = Counter()
    for b in batches:
        skipped.update(b.skipped)
    return batches, skipped


def members_of(path):
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]


def rewrite(src, dst, edit):
    """Copy a shard sample by sample, letting ``edit(key, members)`` change members."""
    samples: dict[str, dict[str, bytes]] = {}
    for name, data in members_of(src):
        key, ext = name.split(".", 1)
        samples.setdefault(key, {})[ext] = data
    with ShardWriter(dst) as w:
        for key, members in samples.items():
            w.write({"__key__": key, **edit(key, members)})


def test_training_batches_have_every_field(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path))
    it = iter(make_pipeline(cfg, "train", PAD))
    batch = next(it)
    B = cfg.data.batch_size
    assert batch.input_ids.shape[0] == B
    assert batch.position_ids.shape[:2] == (3, B)
    assert batch.speech_rows.numel() == B  # every demo sample has a spoken reply
    assert batch.speech_mel.shape[1] == 2 * batch.codec_tokens.shape[1]
    assert batch.num_tokens == int((batch.input_ids != PAD).sum())


def test_validation_reads_every_sample_once(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path))
    batches, skipped = run_val_pipeline(cfg)
    keys = [k for b in batches for k in b.keys]
    # 12 samples, batches of 4, one rank: exactly one pass
    assert len(keys) == len(set(keys)) == SMALL_DEMO.val and not skipped


def test_missing_shard_path_is_a_clear_error(tmp_path):
    with pytest.raises(ShardError) as err:
        resolve_shards(f"{tmp_path}/nothing-{{000..002}}.tar", "data.train_shards")
    msg = str(err.value)
    assert "data.train_shards" in msg and "nothing-000.tar" in msg and "omnitrain data demo" in msg


def test_missing_shard_fails_the_cli_before_training(tmp_path, capsys):
    from omnitrain.cli import main

    code = main(["train", "recipe=smoke", f"data.train_shards={tmp_path}/x.tar", f"run_dir={tmp_path}"])
    assert code == 2 and "shard(s) not found" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists()


def empty_tar(path):
    tarfile.open(path, "w").close()  # end-of-archive blocks only
    return path


def dir_only_tar(path):
    with tarfile.open(path, "w") as tar:  # a member, but not a sample
        info = tarfile.TarInfo("nothing")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    return path


@pytest.mark.parametrize("make,why", [
    (empty_tar, "an empty tar: no members"),
    (lambda p: (p.write_bytes(b""), p)[1], "0 bytes"),
    (lambda p: (p.write_bytes(b"hello, not a tar" * 64), p)[1], "not a tar file"),
])
def test_an_empty_shard_fails_the_cli_fast_naming_it(tmp_path, capsys, make, why):
    from omnitrain.cli import main

    shard = make(tmp_path / "train-000000.tar")
    code = main(["train", "recipe=smoke", f"data.train_shards={shard}", f"run_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert code == 2 and f"shard(s) with no samples: {shard} ({why})" in err
    assert not (tmp_path / "run").exists()


def test_training_on_shards_that_yield_no_sample_stops_instead_of_spinning(demo_dir, tmp_path):
    shard = dir_only_tar(tmp_path / "train-000000.tar")
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, f"data.train_shards={shard}"))
    with pytest.raises(ShardError, match="hold no samples"):
        next(iter(make_pipeline(cfg, "train", PAD)))


def test_truncated_tar_member_is_skipped_and_counted(demo_dir, tmp_path):
    src = sorted(demo_dir.glob("val-*.tar"))[0]
    data = src.read_bytes()
    with tarfile.open(src) as tar:
        offsets = [m.offset_data for m in tar]
    bad = tmp_path / "val-000000.tar"
    bad.write_bytes(data[: offsets[8] + 100])  # cut inside the data of the 9th member
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, f"data.val_shards={bad}"))
    batches, skipped = run_val_pipeline(cfg)
    assert skipped["shard_read_error"] >= 1
    unique = {k for b in batches for k in b.keys}
    assert 0 < len(unique) < SMALL_DEMO.val  # the samples before the cut still arrive
    assert len(batches) >= 1


def validate_with_one_member_changed(demo_dir, tmp_path, matches, change):
    """Validation over a copy of the first training shard in which the first member whose
    name ``matches`` holds ``change(its bytes)``; returns (batches, skips, that sample's key)."""
    src = sorted(demo_dir.glob("train-*.tar"))[0]
    bad = tmp_path / "val-000000.tar"
    broken = []

    def edit(key, members):
        for name in list(members):
            if matches(name) and not broken:
                members[name] = change(members[name])
                broken.append(key)
        return members

    rewrite(src, bad, edit)
    assert broken
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, f"data.val_shards={bad}"))
    return (*run_val_pipeline(cfg), broken[0])


def test_undecodable_wav_is_skipped_and_counted(demo_dir, tmp_path):
    batches, skipped, broken = validate_with_one_member_changed(
        demo_dir, tmp_path, lambda name: name.startswith("audio_0"), lambda data: b"RIFF....WAVEfmt garbage")
    unique = {k for b in batches for k in b.keys}
    assert set(skipped) == {"MediaError"}
    assert not any(k.endswith(broken) for k in unique)
    assert len(unique) == SMALL_DEMO.per_shard - 1


@pytest.mark.parametrize("member", ["audio_0", "reply"])
def test_one_nan_in_a_wav_is_skipped_and_counted(demo_dir, tmp_path, member):
    """A float wav with a single NaN (input audio, or the spoken reply) never reaches the loss."""
    import numpy as np
    import soundfile as sf

    def one_nan(data: bytes) -> bytes:
        wave, sr = sf.read(io.BytesIO(data), dtype="float32")
        wave[len(wave) // 2] = np.nan
        buf = io.BytesIO()
        sf.write(buf, wave, sr, format="WAV", subtype="FLOAT")
        return buf.getvalue()

    batches, skipped, broken = validate_with_one_member_changed(
        demo_dir, tmp_path, lambda name: name.startswith(member) and name.endswith(".wav"), one_nan)
    unique = {k for b in batches for k in b.keys}
    assert set(skipped) == {"MediaError"}  # (validation cycles its shards, so it may meet it twice)
    assert not any(k.endswith(broken) for k in unique) and len(unique) == SMALL_DEMO.per_shard - 1
    assert all(torch.isfinite(b.speech_mel).all() and all(torch.isfinite(f).all() for f in b.audio_features)
               for b in batches)


def test_sample_without_conversation_is_skipped(demo_dir, tmp_path):
    src = sorted(demo_dir.glob("train-*.tar"))[0]
    bad = tmp_path / "val-000000.tar"
    dropped = []

    def edit(key, members):
        if not dropped:
            dropped.append(key)
            members.pop("json")
        return members

    rewrite(src, bad, edit)
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, f"data.val_shards={bad}"))
    batches, skipped = run_val_pipeline(cfg)
    assert set(skipped) == {"SampleError"}


def test_a_stream_of_only_bad_samples_raises_instead_of_spinning(demo_dir, tmp_path):
    src = sorted(demo_dir.glob("train-*.tar"))[0]
    bad = tmp_path / "val-000000.tar"
    rewrite(src, bad, lambda key, members: {k: v for k, v in members.items() if k != "json"})
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, f"data.val_shards={bad}"))
    with pytest.raises(Exception, match="no sample left in this loader's share could be used"):
        run_val_pipeline(cfg)


@pytest.mark.parametrize("world", [2, 3, 5])
def test_every_rank_gets_the_same_number_of_validation_batches(demo_dir, tmp_path, world):
    """Ranks short of data would hang DDP's collectives; shares must cover every sample,
    each once (a rank with fewer samples repeats a batch, marked so metrics skip it)."""
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path))
    per_rank, counts = [], []
    for rank in range(world):
        batches, _ = run_val_pipeline(cfg, world, rank)
        counts.append(len(batches))
        per_rank += [k for b in batches if not b.stream["repeat"] for k in b.keys]
    assert len(set(counts)) == 1
    assert len(per_rank) == len(set(per_rank)) == SMALL_DEMO.val


def test_skips_reach_the_training_logs(demo_dir, tmp_path):
    """Counts ride in batches; the LightningModule accumulates and logs them."""
    from omnitrain.training.stages.module import OmniModule

    cfg = compose_config(smoke_overrides(demo_dir, tmp_path))
    module = OmniModule(cfg)
    module.configure_model()
    batch = next(iter(make_pipeline(cfg, "train", PAD)))
    batch.skipped = {"MediaError": 2}
    logged = {}
    module.log = lambda name, value, **kw: logged.__setitem__(name, value)  # no Trainer here
    module.training_step(batch, 0)
    assert logged["data/skipped"] == 2.0 and logged["data/skipped_MediaError"] == 2.0
    assert torch.isfinite(logged["train/loss"])


def test_shard_writer_is_atomic(tmp_path):
    path = tmp_path / "s.tar"
    with pytest.raises(RuntimeError), ShardWriter(path) as w:
        w.write({"__key__": "a", "json": json.dumps({}).encode()})
        raise RuntimeError("interrupted")
    assert not path.exists() and not (tmp_path / "s.tar.tmp").exists()
    with ShardWriter(path) as w:
        w.write({"__key__": "a", "json": b"{}"})
    assert [n for n, _ in members_of(path)] == ["a.json"]
    assert io.BytesIO(path.read_bytes()).getbuffer().nbytes > 0
