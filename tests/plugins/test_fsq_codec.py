"""``task=codec`` trains ``codec=fsq`` from the shards' speech (1 and 2 code groups), ``omnitrain
export`` writes a codec folder, and the folder encodes and decodes: real espeak-ng words, a
real Lightning run through ``omnitrain train``."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from omnitrain.cli import main
from omnitrain.config.validate import ConfigError
from omnitrain.data.build.demo_spoken import digits_said
from omnitrain.registry import build
from omnitrain.run_config import compose_config
from omnitrain_plugins.fsq_codec import FsqCodec, FsqConfig

pytestmark = pytest.mark.slow
SMALL = ["codec.dim=64", "codec.layers=1", "data.num_workers=0", "data.batch_size=8", "logger=csv",
         "trainer.val_check_interval=20", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1"]


def train_codec(data, run, steps, *extra) -> None:
    assert main(["train", "recipe=demo_speech_codec", f"run_dir={run}", f"data.train_shards={data}/train-*.tar",
                 f"data.val_shards={data}/val-*.tar", f"trainer.max_steps={steps}",
                 f"checkpoint.every_n_steps={steps}", *SMALL, *extra]) == 0


@pytest.mark.parametrize("groups", [1, 2])
def test_task_codec_trains_exports_and_the_folder_codes_speech(groups, spoken_demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    train_codec(spoken_demo_dir, run, 30, f"codec.groups={groups}")
    with open(run / "csv" / "metrics.csv") as f:
        losses = [float(r["train/spec_l1"]) for r in csv.DictReader(f) if r.get("train/spec_l1")]
    assert len(losses) >= 20 and all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses  # it learns to reconstruct

    assert main(["export", str(run / "checkpoints" / "last.ckpt"), str(tmp_path / "codec")]) == 0
    meta = json.loads((tmp_path / "codec" / "codec.json").read_text())
    assert meta["plugin"] == "fsq" and meta["config"]["groups"] == groups and meta["config"]["dim"] == 64
    codec = FsqCodec(FsqConfig(path=str(tmp_path / "codec")))  # (an omni run of 2 groups needs a Talker of groups)
    assert (codec.groups, codec.vocab_size, codec.frame_rate) == (groups, 1000, 25.0)
    wave = torch.from_numpy(digits_said(3, 7, "en-us+f2"))
    codes = codec.encode(wave)
    n = wave.numel() // 640
    assert codes.shape == ((n,) if groups == 1 else (n, groups)) and codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < 1000 and codes.unique().numel() > 1  # speech is not silence
    assert torch.equal(codec.encode(wave), codes)  # deterministic
    speech = codec.decode(codes)
    assert speech.shape == (n * 640,) and torch.isfinite(speech).all() and speech.abs().max() > 1e-3
    # the folder's weights are the run's last ones: the exported codec reconstructs as trained
    net = codec.network()
    frames = net.frames(wave[None])[:, : n * 5]
    assert float((net(frames) - frames).abs().mean()) < losses[0]
    # codes are the quantiser's digits: decoding them is decoding what the network quantised
    ids = codes.reshape(1, n, groups)
    assert torch.allclose(net.decode_values(net.values(ids)), net(frames), atol=1e-5)


def test_untrained_codec_and_bad_folders_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="task=codec"):
        build("codec", compose_config(["codec=fsq"]).codec).encode(torch.zeros(16000))
    with pytest.raises(ConfigError, match="codec.json"):  # before any work
        compose_config(["codec=fsq", f"codec.path={tmp_path}"])
    with pytest.raises(FileNotFoundError, match="codec.json"):
        FsqCodec(FsqConfig(path=str(tmp_path)))


def test_task_codec_refuses_a_codec_it_cannot_train():
    with pytest.raises(ConfigError, match=r"not trainable.*\['fsq'\]"):
        compose_config(["task=codec", "codec=pitch"])
