"""Bad speech input, as DEVELOPERS.md says: out-of-range codec tokens, an unknown or
missing reference speaker and a too-short speech target are skipped and counted; a
reply without speech trains the text only. (Generation's bad input: test_speech_stages.)"""

from __future__ import annotations

import io
import json

import numpy as np
import torch

from omnitrain.data.build.media_writers import encode_audio
from omnitrain.data.collate import collate
from omnitrain.data.sample_builder import SampleBuilder
from omnitrain.data.skips import SKIPS
from omnitrain.model.omni_model import OmniModel
from omnitrain.run_config import compose_config
from tests.data.test_pipeline import rewrite, run_val_pipeline
from tests.helpers import smoke_overrides


def _npy(values) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(values, dtype=np.int32))
    return buf.getvalue()


def _edit_reply(members: dict, **changes) -> dict:
    conv = json.loads(members["json"])
    reply = conv["turns"][-1]
    for key, value in changes.items():
        if value is None:
            reply.pop(key, None)
        else:
            reply[key] = value
    return {**members, "json": json.dumps(conv).encode()}


def _short_speech(members: dict) -> dict:
    return {**members, "reply.wav": encode_audio(np.zeros(100, np.float32), 16000)}


# how the first samples of the shard are broken, and what their skip must say
BREAKS = [
    (lambda m: {**m, "reply.codec.npy": _npy([1, 2, 10_000])},  # tokens of another codec
     "codec tokens span [1, 10000] but the codec vocabulary has"),
    (lambda m: _edit_reply(m, speaker="nobody"), "unknown speaker 'nobody'"),
    (lambda m: {k: v for k, v in m.items() if k != "reference.wav"},  # the reference's audio
     "member 'reference.wav' is missing"),
    (_short_speech, "the speech (100 samples) is shorter than one codec frame"),
]


def test_bad_speech_samples_are_skipped_and_counted(demo_dir, tmp_path, monkeypatch):
    """Each broken sample is skipped once, counted under SampleError in the batches, and
    its skip names that sample and what is wrong with it."""
    broken: dict[str, str] = {}  # sample key -> what its skip must say

    def edit(key, members):
        if len(broken) == len(BREAKS):
            return members
        make, reason = BREAKS[len(broken)]
        broken[key] = reason
        return make(members)

    out = tmp_path / "shards"
    out.mkdir()
    rewrite(next(demo_dir.glob("val-*.tar")), out / "val-000000.tar", edit)
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, f"data.val_shards={out}/val-*.tar",
                                         "data.batch_size=2"))
    seen = []
    real_add = SKIPS.add
    monkeypatch.setattr(SKIPS, "add", lambda reason, where, error: seen.append((where, reason, str(error)))
                        or real_add(reason, where, error))
    SKIPS.drain()  # skips an earlier test left uncounted are not this test's
    batches, skipped = run_val_pipeline(cfg)
    assert skipped == {"SampleError": len(BREAKS)}
    where = {f"{out / 'val-000000.tar'}:{key}": reason for key, reason in broken.items()}
    assert sorted(w for w, _, _ in seen) == sorted(where)  # each broken sample once, no other
    for w, reason, message in seen:
        assert reason == "SampleError" and message.startswith(f"sample {w}: ") and where[w] in message
    # (validation repeats a good sample in place of a batch with none: keys may come twice)
    keys = {k.rsplit(":", 1)[-1] for b in batches for k in b.keys}
    assert keys and not keys & set(broken)


def test_reply_without_speech_trains_text_only(demo_dir, smoke_cfg):
    """No "speech": the sample gives text loss; a batch with no speech at all keeps the
    Talker and DiT in the graph with zero loss (so every rank runs the same graph)."""
    from tests.data.test_sample_builder import samples_of

    builder = SampleBuilder.from_config(smoke_cfg)
    members = next(iter(samples_of(next(demo_dir.glob("train-*.tar"))).values()))
    plain = _edit_reply(members, speech=None, codec=None, reference=None)
    ex = builder.build(json.loads(plain["json"]), plain.__getitem__, "text-only")
    assert ex.codec_tokens is None and (ex.labels >= 0).any()
    spoken = builder.build(json.loads(members["json"]), members.__getitem__, "spoken")
    no_ref = _edit_reply(members, reference=None)
    unref = builder.build(json.loads(no_ref["json"]), no_ref.__getitem__, "no-reference")
    assert unref.codec_tokens is not None and unref.reference_mel is None
    model = OmniModel(smoke_cfg)
    mixed = collate([ex, spoken, unref], 256)
    assert mixed.speech_rows.tolist() == [1, 2] and mixed.reference_lengths[1] == 0
    assert all(torch.isfinite(v) for v in model(mixed).values())
    losses = model(collate([ex], 256))
    assert losses["codec"] == 0 and losses["flow"] == 0 and losses["text"] > 0
    losses["loss"].backward()
    assert all(p.grad is not None and not p.grad.any() for p in model.talker.parameters())
