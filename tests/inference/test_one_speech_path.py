"""Generation reads the Talker's inputs through the same path as training: the Thinker
decodes with a KV cache (``Thinker.step``) and ``talker_context`` builds the Talker's view
from a ``Batch`` of the prompt and the reply, so there is no train/inference skew."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import webdataset as wds

from omnitrain.data.collate import collate
from omnitrain.data.sample_builder import SampleBuilder
from omnitrain.data.shards import resolve_shards
from omnitrain.inference.thinker_decode import ThinkerDecoder
from omnitrain.model.omni_model import OmniModel
from omnitrain.model.speech_path import speech_condition
from omnitrain.nn.kv_cache import KVCache
from omnitrain.run_config import compose_config
from omnitrain.slots import ContextSpec
from tests.helpers import speech_overrides


def spoken_sample(cfg):
    urls = resolve_shards(cfg.data.train_shards, "data.train_shards")
    for sample in wds.tarfile_to_samples()({"url": u} for u in urls):
        turns = json.loads(sample["json"])["turns"]
        if any("speech" in t for t in turns) and any("audio" in c for t in turns for c in t.get("content", [])):
            return sample, turns
    raise AssertionError("no spoken reply with audio in the demo shards")


QWEN3_VIEW = ContextSpec(add_embeddings=False, text_as_embeddings=True, turns=("user",), positions="closed")


@pytest.mark.parametrize("spec", [None, QWEN3_VIEW], ids=["qwen2.5-view", "qwen3-view"])
def test_generation_gives_the_talker_what_training_gives_it(demo_dir, tmp_path, spec):
    """Under the Talker's own view (Qwen2.5-Omni's), and under Qwen3-Omni's: user turns only
    (the system turn left out), positions closed up, text read as embeddings."""
    cfg = compose_config(speech_overrides(demo_dir, tmp_path))
    torch.manual_seed(0)
    model = OmniModel(cfg).eval()
    if spec is not None:
        model.talker.context_spec = lambda: spec  # as a Talker plugin declaring that view would
    builder = SampleBuilder.from_config(cfg)
    sample, turns = spoken_sample(cfg)
    media = sample.__getitem__
    pad = builder.special["pad"]
    system = {"role": "system", "content": [{"text": "Answer in digits."}]}
    turns = [system, *[t for t in turns if t["role"] != "system"]]
    train = collate([builder.build({"turns": turns}, media, "s")], pad)
    prompt = builder.build({"turns": [t for t in turns if t["role"] != "assistant"]}, media, "p", for_generation=True)
    with torch.no_grad():
        thinker, inputs = model.thinker_forward(train)
        trained = model.speech_items(train, thinker, inputs.embeds)
        dec = ThinkerDecoder(model, collate([prompt], pad), prompt.layout)
        for token in train.input_ids[0, train.reply_positions[0]].tolist():  # teacher-forced reply
            dec.feed(token)
        served = dec.talker_context(speech_condition(train, cfg.speech.n_mels))
    a, b = trained.ctx, served
    # training pads every prompt to the whole prompt's width (known without reading the GPU),
    # generation to what is kept: the same tokens, right-aligned, and padding
    width = b.prompt_mask.shape[1]
    assert a.prompt_mask.shape[1] >= width and not a.prompt_mask[:, :-width].any()
    a = dataclasses.replace(a, prompt=a.prompt[:, -width:], prompt_mask=a.prompt_mask[:, -width:],
                            prompt_positions=a.prompt_positions[..., -width:], prompt_media=a.prompt_media[:, -width:])
    assert torch.equal(a.prompt_mask, b.prompt_mask) and torch.equal(a.prompt_positions, b.prompt_positions)
    assert (a.prompt - b.prompt).abs().max().item() < 4e-6  # measured 4.8e-7
    assert (a.reply - b.reply).abs().max().item() < 2e-6  # measured 2.4e-7
    assert torch.equal(a.speaker, b.speaker) and torch.equal(a.prompt_media, b.prompt_media)
    assert a.prompt_media.any()  # the audio clip is read
    if spec is not None:  # the system turn left out, the rest closed up: the first id read is 0
        assert int(a.prompt_mask.sum()) < int(train.reply_positions[0, 0])
        assert a.prompt_positions[:, 0, -int(a.prompt_mask.sum())].tolist() == [0] * a.prompt_positions.shape[0]


def test_thinker_step_with_a_cache_equals_the_full_forward(demo_dir, tmp_path):
    cfg = compose_config(speech_overrides(demo_dir, tmp_path))
    torch.manual_seed(0)
    thinker = OmniModel(cfg).eval().thinker
    L = 24
    embeds = torch.randn(1, L, thinker.hidden_size)
    positions = torch.arange(L)[None, None].expand(3, 1, L)
    with torch.no_grad():
        full = thinker(embeds, positions, torch.ones(1, L, dtype=torch.long))
        cache = KVCache()
        parts = [thinker.step(embeds[:, :10], positions[:, :, :10], cache)]  # prefill, then one at a time
        parts += [thinker.step(embeds[:, i:i + 1], positions[:, :, i:i + 1], cache) for i in range(10, L)]
    assert (torch.cat(parts, 1) - full).abs().max().item() < 1e-6 and cache.length == L  # measured 1.2e-7
