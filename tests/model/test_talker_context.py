"""What the Talker reads (``ContextSpec``): the turns it keeps and the positions it reads
them at, checked against the same conversation built without the left-out turns.

A conversation of a system turn, a user turn with an audio clip, an earlier assistant
reply, a user turn with an image, and the spoken reply, packed second in its row behind
another sample. Read with ``turns=("user",), positions="closed"`` (Qwen3-Omni's Talker),
the prompt must be token for token, and position id for position id, the prompt of the
conversation that never had the system turn or the earlier reply: the position scheme
(TMRoPE, media included) run on it by the sample builder, not by the code under test.
"""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import pytest
import torch
import webdataset as wds

from omnitrain.data.collate import collate
from omnitrain.data.sample_builder import SampleBuilder
from omnitrain.data.shards import resolve_shards
from omnitrain.model.speech_path import talker_context
from omnitrain.run_config import compose_config
from omnitrain.slots import ContextSpec
from tests.helpers import speech_overrides


def demo_members(cfg) -> tuple[dict, list, str]:
    """Members of the demo's samples by name, a spoken reply's turns (user turn with an
    audio clip) and the name of an image."""
    members, spoken, image = {}, None, None
    urls = resolve_shards(cfg.data.train_shards, "data.train_shards")
    for sample in wds.tarfile_to_samples()({"url": u} for u in urls):
        key = sample["__key__"]
        turns = json.loads(sample["json"])["turns"]
        parts = [c for t in turns for c in t.get("content", [])]
        for name, value in sample.items():
            if not name.startswith("__"):
                members[f"{key}/{name}"] = value

        def own(part: dict, key=key) -> dict:
            return {k: f"{key}/{v}" if k in ("audio", "image", "video") else v for k, v in part.items()}

        if spoken is None and any("speech" in t for t in turns) and any("audio" in c for c in parts) \
                and not any("image" in c or "video" in c for c in parts):
            spoken = [{**t, "content": [own(c) for c in t["content"]],
                       **{k: f"{key}/{t[k]}" for k in ("speech", "codec", "reference") if k in t}} for t in turns]
        if image is None and any("image" in c for c in parts):
            image = next(own(c)["image"] for c in parts if "image" in c)
        if spoken and image:
            return members, spoken, image
    raise AssertionError("the demo shards lack a spoken reply to audio, or an image")


@pytest.fixture(scope="module")
def built(demo_dir, tmp_path_factory):
    cfg = compose_config(speech_overrides(demo_dir, tmp_path_factory.mktemp("run")))
    builder = SampleBuilder.from_config(cfg)
    assert builder.tok.default_system is None  # else the builder would put a system turn back
    members, spoken, image = demo_members(cfg)
    user, reply = spoken[-2], spoken[-1]
    earlier = [{"role": "system", "content": [{"text": "You answer with digits."}]},
               {"role": "user", "content": [{"text": "Look at this."}, {"image": image}]},
               {"role": "assistant", "content": [{"text": "I see it."}]}]
    full = builder.build({"turns": [*earlier, user, reply]}, members.__getitem__, "full")
    without = builder.build({"turns": [earlier[1], user, reply]}, members.__getitem__, "without")
    no_user = builder.build({"turns": [earlier[0], earlier[2], reply]}, members.__getitem__, "no_user")
    other = builder.build({"turns": [{"role": "user", "content": [{"text": "Hello there"}]},
                                     {"role": "assistant", "content": [{"text": "1 2"}]}]},
                          members.__getitem__, "other")
    batch = collate([other, full], builder.special["pad"], pack_length=len(other) + len(full))
    assert batch.input_ids.shape[0] == 1 and batch.speech_rows.tolist() == [0]  # one row, the reply second
    sp = builder.special
    media = (batch.input_ids == sp["audio"]) | (batch.input_ids == sp["image"])
    assert media.sum() > 0 and (batch.input_ids == sp["image"]).sum() > 0
    return SimpleNamespace(batch=batch, media=media, full=full, without=without, no_user=no_user, special=sp)


def read(built, spec: ContextSpec, by: str = "token"):
    """The prompt the Talker reads (ids, or with ``by="index"`` where in the row each
    vector came from), its position ids and its media mask."""
    batch = built.batch
    L = batch.input_ids.shape[1]
    vectors = (batch.input_ids if by == "token" else torch.arange(L)[None]).float()[..., None]
    ctx = talker_context(batch, vectors, built.media, torch.zeros(1, dtype=torch.long), spec)
    mask = ctx.prompt_mask[0]
    return ctx.prompt[0, mask, 0].long(), ctx.prompt_positions[:, 0][:, mask], ctx.prompt_media[0, mask]


def prompt_of(example):
    start = int(example.reply_positions[0])
    return example.input_ids[:start], example.position_ids[:, :start]


def is_media(ids, special) -> torch.Tensor:
    return (ids == special["audio"]) | (ids == special["image"])


def test_user_turns_only_at_closed_positions_is_the_conversation_without_the_others(built):
    ids, positions, media = read(built, ContextSpec(turns=("user",), positions="closed"))
    want_ids, want_positions = prompt_of(built.without)
    assert torch.equal(ids, want_ids)  # the system turn and the earlier reply left out, the reply's header kept
    assert torch.equal(positions, want_positions)  # the position scheme's ids of that conversation
    assert torch.equal(media, is_media(want_ids, built.special))


def test_left_out_media_turns_close_up_by_their_position_span_not_their_token_count(built):
    """The user turns hold an image and an audio clip, whose TMRoPE ids span fewer ids than
    they have tokens: leaving them out moves the later turns by the span."""
    ids, positions, _ = read(built, ContextSpec(turns=("system", "assistant"), positions="closed"))
    want_ids, want_positions = prompt_of(built.no_user)
    assert torch.equal(ids, want_ids) and torch.equal(positions, want_positions)


def test_user_turns_at_the_thinkers_positions_are_read_where_the_thinker_read_them(built):
    batch = built.batch
    where, positions, _ = read(built, ContextSpec(turns=("user",)), by="index")
    assert torch.equal(batch.input_ids[0, where], prompt_of(built.without)[0])
    assert torch.equal(positions, batch.position_ids[:, 0, where])
    assert not torch.equal(positions, prompt_of(built.without)[1])  # the system turn came first


def test_every_turn_is_the_whole_sample_before_the_reply(built):
    ids, positions, media = read(built, ContextSpec())
    want_ids, want_positions = prompt_of(built.full)
    assert torch.equal(ids, want_ids) and torch.equal(positions, want_positions)
    assert torch.equal(media, is_media(want_ids, built.special))


def test_what_each_token_reads():
    states, embeds = torch.tensor([[[1.0], [2.0], [3.0]]]), torch.tensor([[[10.0], [20.0], [30.0]]])
    media = torch.tensor([[False, True, False]])
    assert ContextSpec().vectors(states, embeds, media)[0, :, 0].tolist() == [11.0, 2.0, 33.0]  # Qwen2.5-Omni
    assert ContextSpec(add_embeddings=False).vectors(states, embeds, media)[0, :, 0].tolist() == [1.0, 2.0, 3.0]
    qwen3 = ContextSpec(add_embeddings=False, text_as_embeddings=True)
    assert qwen3.vectors(states, embeds, media)[0, :, 0].tolist() == [10.0, 2.0, 30.0]


def test_a_spec_that_cannot_be_read_is_refused(built):
    with pytest.raises(ValueError, match="add_embeddings must be False"):
        ContextSpec(text_as_embeddings=True)
    with pytest.raises(ValueError, match=r"tuple of roles from \['system', 'user', 'assistant'\], got 'user'"):
        ContextSpec(turns="user")
    with pytest.raises(ValueError, match="'thinker' or 'closed'"):
        ContextSpec(positions="recounted")
    batch = dataclasses.replace(built.batch, turn_roles=torch.zeros(0, 0, dtype=torch.int8))
    with pytest.raises(ValueError, match="carries no turn roles"):
        talker_context(batch, batch.input_ids[..., None].float(), built.media, torch.zeros(1, dtype=torch.long),
                       ContextSpec(turns=("user",)))
