"""Helpers shared by tests (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omnitrain.data.build.demo import DemoSizes

SMALL_DEMO = DemoSizes(train=48, val=12, heldout=4, per_shard=16)


def smoke_overrides(demo_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "recipe=smoke",
        f"data.train_shards={demo_dir}/train-*.tar",
        f"data.val_shards={demo_dir}/val-*.tar",
        f"run_dir={run_dir}",
        "logger=csv",
        *extra,
    ]


def untrained_codec_folder(folder: Path) -> Path:
    """What `omnitrain export` of a task=codec run writes, with the network's initial weights:
    the codec folder a recipe that speaks through a trained codec (demo_speech) needs to compose."""
    import json

    from safetensors.torch import save_file

    from omnitrain.registry import build
    from omnitrain.run_config import compose_config

    codec = build("codec", compose_config(["codec=fsq"]).codec)
    folder.mkdir(parents=True)
    save_file(codec.network().state_dict(), str(folder / "model.safetensors"))
    (folder / "codec.json").write_text(json.dumps(codec.describe()))
    return folder


def speech_overrides(demo_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    """The tiny dual-track Talker + flow_dit run (recipes/speech_smoke.yaml)."""
    return ["recipe=speech_smoke", *smoke_overrides(demo_dir, run_dir, *extra)[1:]]


def randomized(module, std: float):
    """``module`` with every parameter drawn from N(0, std) (reference models start some
    weights at zero or one: a parity test needs them all to matter), in eval mode."""
    import torch

    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, std)
    return module.eval()


def model_outputs(model, batch) -> dict:
    """Text logits, talker (codec) logits and DiT velocity of ``model`` on fixed inputs."""
    import torch

    from omnitrain.model.speech_path import talker_inputs

    torch.manual_seed(1)
    with torch.no_grad():
        thinker, inputs = model.thinker_forward(batch)
        text = model.thinker.logits(thinker.hidden)
        items = model.speech_items(batch, thinker, inputs.embeds)
        codec_in, in_mask, _ = talker_inputs(model.talker, items.codes, items.code_mask)
        codec = model.talker(items.ctx, codec_in, in_mask)
        x = torch.randn_like(items.mel)
        t = torch.linspace(0.1, 0.9, x.shape[0])
        keep = torch.zeros(x.shape[0], dtype=torch.bool)
        dit = model.dit(x, t, items.codes, items.code_mask, keep, items.cond)
    return {"text": text, "codec": codec, "dit": dit}


def modality_batches(cfg, pad_id: int, size: int = 2):
    """(a batch of text-only prompts, a batch holding audio, image and video) from the
    training shards: ranks given one each disagree on which encoders have real input."""
    from omnitrain.data.collate import collate
    from omnitrain.data.examples import ExampleBuilder
    from omnitrain.data.shards import resolve_shards
    from omnitrain.data.tar_samples import read_shard

    urls = resolve_shards(cfg.data.train_shards, "data.train_shards")
    build = ExampleBuilder(cfg)
    examples = (build(sample) for url in urls for _, sample in read_shard(url))
    text_only, audio, vision = [], [], []
    for ex in filter(None, examples):
        if not ex.audio_features and not ex.vision_patches:
            text_only.append(ex)
        elif ex.audio_features and ex.vision_patches:
            audio.append(ex)
        elif ex.vision_patches:
            vision.append(ex)
        if len(text_only) >= size and audio and vision:
            break
    return collate(text_only[:size], pad_id), collate([audio[0], vision[0]], pad_id)


@contextmanager
def one_process_group() -> Iterator[None]:
    """A 1-process gloo group for a test. In-process DeepSpeed runs earlier in the session leave
    theirs up (ending it would break later ones): reuse it then, else start one and end it."""
    import torch.distributed as dist

    if dist.is_initialized():
        assert dist.get_world_size() == 1, "a test left a process group of several ranks"
        yield
        return
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def fds_on(folder: Path) -> list[str]:
    """What this process holds open under ``folder`` (by path: other threads' files aside)."""
    import os

    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used, closed by now
            continue
        if target.startswith(str(folder)):
            held.append(target)
    return held
