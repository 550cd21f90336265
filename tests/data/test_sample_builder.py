"""Conversations become tokens whose layout, labels and features agree."""

from __future__ import annotations

import json
import tarfile

import pytest
import torch

from omnitrain.data.examples import _Members
from omnitrain.data.media import MediaError
from omnitrain.data.sample_builder import SampleBuilder, SampleError
from omnitrain.positions.layout import AudioSeg, ImageSeg, TextSeg, VideoSeg, layout_length
from omnitrain.tokens import IGNORE_INDEX


def samples_of(path):
    """Group a shard's members by sample key."""
    out: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for m in tar:
            key, name = m.name.split(".", 1)
            out.setdefault(key, {})[name] = tar.extractfile(m).read()
    return out


@pytest.fixture
def builder(smoke_cfg):
    return SampleBuilder.from_config(smoke_cfg)


def build_all(builder, demo_dir):
    for key, members in samples_of(next(demo_dir.glob("train-*.tar"))).items():
        conv = json.loads(members["json"])
        yield conv, builder.build(conv, members.__getitem__, key)


def test_every_demo_kind_builds_consistently(builder, demo_dir):
    kinds = set()
    for conv, ex in build_all(builder, demo_dir):
        kind = conv["meta"]["kind"]
        kinds.add(kind)
        assert len(ex.input_ids) == layout_length(ex.layout) == ex.position_ids.shape[1]
        sp = builder.special
        n_audio = int((ex.input_ids == sp["audio"]).sum())
        assert n_audio == sum(builder.audio_fe.num_tokens(f.shape[-1]) for f in ex.audio_features)
        n_vis = int(((ex.input_ids == sp["image"]) | (ex.input_ids == sp["video"])).sum())
        assert n_vis == sum(t * h * w // 4 for t, h, w in ex.vision_grids)
        # labels: exactly the reply text and eos
        labelled = ex.input_ids[ex.labels != IGNORE_INDEX].tolist()
        a, b = conv["meta"]["digits"]
        assert builder.tok.decode(labelled) == f"{a} {b}" and labelled[-1] == sp["eos"]
        assert ex.reply_positions.tolist() == (ex.labels != IGNORE_INDEX).nonzero()[:, 0].tolist()
        assert ex.codec_tokens.numel() * 2 == ex.speech_mel.shape[0]
        seg_types = {type(s) for s in ex.layout}
        expected = {"text": set(), "audio": {AudioSeg}, "image": {ImageSeg}, "video": {VideoSeg}}[kind]
        assert seg_types - {TextSeg} == expected
    assert kinds == {"text", "audio", "image", "video"}


def test_video_body_order_is_the_position_schemes(builder, demo_dir):
    for conv, ex in build_all(builder, demo_dir):
        if conv["meta"]["kind"] != "video":
            continue
        seg = next(s for s in ex.layout if isinstance(s, VideoSeg))
        assert seg.audio_tokens > 0
        start = ex.input_ids.tolist().index(builder.special["vision_bos"]) + 2
        body = ex.input_ids[start : start + seg.tokens + seg.audio_tokens]
        assert torch.equal(body == builder.special["audio"], builder.position.video_audio_order(seg))
        return
    pytest.fail("no video sample in the shard")


def demo_sample(demo_dir, kind):
    """The first demo sample of ``kind``: its conversation and members."""
    for members in samples_of(next(demo_dir.glob("train-*.tar"))).values():
        conv = json.loads(members["json"])
        if conv["meta"]["kind"] == kind:
            return conv, members
    pytest.fail(f"no {kind} sample in the shard")


def test_missing_media_member_names_the_sample(builder, demo_dir):
    """A real audio sample without its audio member, looked up as training looks members
    up: the error names the sample and the member the conversation refers to."""
    conv, members = demo_sample(demo_dir, "audio")
    name = conv["turns"][0]["content"][0]["audio"]
    del members[name]
    present = sorted(k for k in members if not k.startswith("__"))
    want = f"sample k1: member '{name}' is missing (has {present})"
    with pytest.raises(SampleError) as info:
        builder.build(conv, _Members(members, "k1"), "k1")
    assert str(info.value) == want


@pytest.mark.parametrize(
    "kind,why", [("audio", "audio file"), ("image", "image"), ("video", "video")]
)
def test_undecodable_media_names_the_sample_field_and_file(builder, demo_dir, kind, why):
    """Real media bytes cut short: the decoder's error names the sample, the part of the
    conversation and the member."""
    conv, members = demo_sample(demo_dir, kind)
    name = conv["turns"][0]["content"][0][kind]
    members[name] = members[name][:40]
    want = f"sample k1: turns[0].content[0] ({name}): not a decodable {why} ("
    with pytest.raises(MediaError) as info:
        builder.build(conv, members.__getitem__, "k1")
    assert str(info.value).startswith(want)


@pytest.mark.parametrize(
    "conv,needle",
    [
        ({}, "'turns' must be a non-empty list"),
        ({"turns": [{"role": "robot", "content": []}]}, "role must be"),
        ({"turns": [{"role": "user", "content": [{"sound": "x"}]}]}, "needs exactly one of"),
        ({"turns": [{"role": "user", "content": [{"text": 5}]}]}, "text must be a string"),
    ],
)
def test_malformed_conversations_are_named(builder, conv, needle):
    with pytest.raises(SampleError, match=needle):
        builder.build(conv, lambda n: b"", "k2")


def test_out_of_range_codec_tokens_are_rejected(builder, demo_dir):
    import io

    import numpy as np

    members = next(iter(samples_of(next(demo_dir.glob("train-*.tar"))).values()))
    buf = io.BytesIO()
    np.save(buf, np.array([1, 2, 10_000], dtype=np.int32))
    members = {**members, "reply.codec.npy": buf.getvalue()}
    with pytest.raises(SampleError, match="codec vocabulary"):
        builder.build(json.loads(members["json"]), members.__getitem__, "k3")


def test_errors_number_the_turns_as_the_sample_wrote_them_when_a_default_system_turn_is_added(
        demo_dir, tmp_path):
    """A tokenizer with a default system turn (the Qwen tokenizers) puts it first: the
    sample's turns[0] is then the second turn built, and was reported as turns[1]."""
    from omnitrain.run_config import compose_config
    from tests.helpers import smoke_overrides

    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, "tokenizer.default_system=Be brief."))
    builder = SampleBuilder.from_config(cfg)
    conv, members = demo_sample(demo_dir, "audio")
    name = conv["turns"][0]["content"][0]["audio"]
    members[name] = members[name][:40]
    with pytest.raises(MediaError) as info:
        builder.build(conv, members.__getitem__, "k1")
    assert str(info.value).startswith(f"sample k1: turns[0].content[0] ({name}): not a decodable audio file (")


def test_codes_must_have_the_codecs_groups(builder, demo_dir):
    """A codec of one group reads (n,) codes, and (n, 1) as the same; codes of 3 groups per
    frame (a shard written with another codec) are refused, naming the shapes."""
    import io

    import numpy as np

    members = next(m for m in samples_of(next(demo_dir.glob("train-*.tar"))).values() if "reply.codec.npy" in m)
    codes = np.load(io.BytesIO(members["reply.codec.npy"]))

    def built(array):
        buf = io.BytesIO()
        np.save(buf, array)
        return builder.build(json.loads(members["json"]), {**members, "reply.codec.npy": buf.getvalue()}.__getitem__,
                             "k")

    assert torch.equal(built(codes[:, None]).codec_tokens, built(codes).codec_tokens)
    with pytest.raises(SampleError, match=r"shape \(\d+, 3\) but the codec has 1 code group\(s\) per frame, so \(n,\)"):
        built(np.stack([codes] * 3, -1))


def test_codes_of_several_groups_give_the_dit_one_mel_stretch_per_frame(builder, demo_dir):
    """With 3 code groups, a reply whose codes cover half its speech: the mel targets are cut
    to the frames (not to frames x groups, the element count), as with one group."""
    import copy
    import io

    import numpy as np

    members = next(m for m in samples_of(next(demo_dir.glob("train-*.tar"))).values() if "reply.codec.npy" in m)
    codes = np.load(io.BytesIO(members["reply.codec.npy"]))
    half = len(codes) // 2
    buf = io.BytesIO()
    np.save(buf, np.stack([codes[:half]] * 3, -1))
    three = copy.copy(builder)
    three.code_groups = 3
    ex = three.build(json.loads(members["json"]), {**members, "reply.codec.npy": buf.getvalue()}.__getitem__, "k")
    assert tuple(ex.codec_tokens.shape) == (half, 3)
    assert ex.speech_mel.shape[0] == half * builder.mel_frames_per_code
