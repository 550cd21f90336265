"""System turns end to end: the tokenizer's template, labels, pack validation, training."""

from __future__ import annotations

import json

import pytest

from omnitrain.cli import main
from omnitrain.data.sample_builder import SampleBuilder, SampleError
from omnitrain.inference.generate import user_turn, with_system
from omnitrain.registry import build
from omnitrain.run_config import compose_config
from omnitrain.tokens import IGNORE_INDEX
from tests.data.test_sample_builder import samples_of
from tests.helpers import smoke_overrides

CONV = {"turns": [
    {"role": "system", "content": [{"text": "Be brief."}]},
    {"role": "user", "content": [{"text": "Say 1 2."}]},
    {"role": "assistant", "content": [{"text": "1 2"}]},
]}


@pytest.fixture
def builder(smoke_cfg):
    return SampleBuilder.from_config(smoke_cfg)


def test_byte_ids_are_unchanged_by_the_system_role():
    """Checkpoints made before the system role still load: same ids, same vocabulary size."""
    tok = build("tokenizer", compose_config(["recipe=smoke"]).tokenizer)
    sp = tok.special_ids()
    assert (sp["pad"], sp["eos"], sp["user"], sp["assistant"], sp["video"]) == (256, 257, 258, 259, 266)
    assert tok.vocab_size == 267 and sp["system"] == 255
    assert 255 not in tok.encode("any text ÿ \U0001f600")  # UTF-8 never holds byte 0xFF
    assert tok.turn_tokens("user").open == (258,) and tok.turn_tokens("assistant").close == (257,)
    assert tok.generation_prompt() == [259] and tok.stop_id() == 257


def test_system_turn_tokens_and_labels(builder):
    ex = builder.build(CONV, lambda n: b"", "k")
    ids = ex.input_ids.tolist()
    assert ids == [255, *b"Be brief.", 258, *b"Say 1 2.", 259, *b"1 2", 257]
    labelled = ex.input_ids[ex.labels != IGNORE_INDEX].tolist()
    assert labelled == [*b"1 2", 257]  # only the reply and its closing token


def test_the_tokenizers_default_system_is_put_first():
    b = SampleBuilder.from_config(compose_config(["recipe=smoke", "tokenizer.default_system=Hi."]))
    no_system = {"turns": CONV["turns"][1:]}
    assert b.build(no_system, lambda n: b"", "k").input_ids.tolist()[:5] == [255, *b"Hi.", 258]
    # a conversation's own system turn wins
    assert b.build(CONV, lambda n: b"", "k").input_ids.tolist()[:11] == [255, *b"Be brief.", 258]


@pytest.mark.parametrize("turns,needle", [
    ([{"role": "user", "content": [{"text": "a"}]}, {"role": "system", "content": [{"text": "b"}]}],
     "only the first turn"),
    ([{"role": "robot", "content": []}], "role must be one of"),
])
def test_bad_roles_are_named(builder, turns, needle):
    with pytest.raises(SampleError, match=needle):
        builder.build({"turns": turns}, lambda n: b"", "k")


def test_generation_prompt_with_a_system_prompt(builder):
    conv = user_turn("Say 1 2.", system="Be brief.")
    assert conv["turns"][0] == {"role": "system", "content": [{"text": "Be brief."}]}
    assert with_system({"turns": conv["turns"][1:]}, "Be brief.") == conv
    assert with_system(conv, "Other.") == conv  # the conversation's own system turn is kept
    ex = builder.build(conv, lambda n: b"", "p", for_generation=True)
    assert ex.input_ids.tolist()[0] == 255 and ex.input_ids.tolist()[-1] == 259


def test_system_turns_pack_and_train(demo_dir, tmp_path, capsys):
    """A manifest line with a system turn packs and trains; a misplaced one is skipped at pack time."""
    heldout = demo_dir / "heldout"
    audio = next(heldout.glob("*_audio_*"))
    good = {"turns": [
        {"role": "system", "content": [{"text": "You answer with digits."}]},
        {"role": "user", "content": [{"audio": str(audio)}, {"text": "Which digits?"}]},
        {"role": "assistant", "content": [{"text": "7 0"}]},
    ]}
    late = {"turns": [good["turns"][1], good["turns"][0], good["turns"][2]]}
    spoken_user = {"turns": [{**good["turns"][1], "speech": str(audio)}, good["turns"][2]]}
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(c) + "\n" for c in [good, good, late, spoken_user, good, good]))
    out = tmp_path / "shards"
    assert main(["data", "pack", str(manifest), str(out), "recipe=smoke"]) == 0
    skipped = [json.loads(x) for x in (out / "shard.skipped.jsonl").read_text().splitlines()]
    assert [s["line"] for s in skipped] == [3, 4]
    assert "only the first turn" in skipped[0]["reason"] and "only assistant turns speak" in skipped[1]["reason"]
    shards = f"{out}/shard-*.tar"
    overrides = [*smoke_overrides(demo_dir, tmp_path / "run", "trainer.max_steps=2"),
                 f"data.train_shards={shards}", f"data.val_shards={shards}"]
    assert main(["train", *overrides]) == 0
    builder = SampleBuilder.from_config(compose_config(["recipe=smoke"]))
    built = 0
    for shard in sorted(out.glob("shard-*.tar")):  # what training reads: nothing is skipped
        for key, members in samples_of(shard).items():
            ex = builder.build(json.loads(members["json"]), members.__getitem__, key)
            assert ex.input_ids[0] == 255 and ex.audio_features
            built += 1
    assert built == 4


def test_a_tokenizer_without_a_system_token_still_works_without_system_turns(smoke_cfg):
    """Tokenizer plugins written before the system role keep working; a system turn is named."""
    from omnitrain_plugins.byte_tokenizer import ByteTokenizer

    class Older(ByteTokenizer):
        def special_id(self, role: str) -> int:
            if role == "system":
                raise KeyError(role)
            return super().special_id(role)

    b = SampleBuilder.from_config(smoke_cfg)
    b.tok = Older()
    b.special = b.tok.special_ids()
    assert "system" not in b.special
    assert b.build({"turns": CONV["turns"][1:]}, lambda n: b"", "k").input_ids.tolist()[0] == 258
    with pytest.raises(SampleError, match="has no 'system' special token"):
        b.build(CONV, lambda n: b"", "k")
