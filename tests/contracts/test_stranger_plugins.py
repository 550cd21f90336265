"""A stranger's plugins (``stranger_plugins.py``) go through the core by the contracts
alone: encoder levels reach the Thinker as side inputs, the Talker reads the Thinker layer
its ``ContextSpec`` names, the Talker's own loss and every slot's auxiliary losses enter
the total with their declared coefficients and are logged by name, and with ``dit=none``
a vocoder decodes the codes straight to a waveform, streamed as it decodes whole; the
user's path (train, validate, save, resume, export, generate, stream) runs under fp32,
bf16-mixed and ZeRO-2."""

from __future__ import annotations

import csv
import dataclasses
import json
import math

import pytest
import soundfile as sf
import torch

from omnitrain.cli import main
from omnitrain.config.validate import ConfigError
from omnitrain.data.pipeline import make_pipeline
from omnitrain.model.omni_model import OmniModel
from omnitrain.run_config import compose_config
from omnitrain.slots import SpeechCondition
from tests.helpers import smoke_overrides

STRANGER = ["plugins=[tests.contracts.stranger_plugins]", "audio_encoder=stranger_leveled",
            "thinker=stranger_side", "talker=stranger_groups", "codec=stranger_groups", "dit=none",
            "vocoder=stranger_codes", "loss.flow=0"]  # trained on groups_demo_dir: codes (n, 3)
NAMED = {"codec_smooth": 0.1, "talker_z": 1e-3, "balance": 0.01, "audio_spread": 0.05}  # the declared defaults


@pytest.fixture(scope="module")
def model_and_batch(groups_demo_dir, tmp_path_factory):
    cfg = compose_config(smoke_overrides(groups_demo_dir, tmp_path_factory.mktemp("run"), *STRANGER))
    torch.manual_seed(0)
    model = OmniModel(cfg).eval()
    batch = next(b for b in make_pipeline(cfg, "train", 256)
                 if (b.input_ids == model.audio_id).any() and b.speech_rows.numel())
    return cfg, model, batch


def test_every_named_loss_enters_the_total_with_its_declared_coefficient(model_and_batch):
    cfg, model, batch = model_and_batch
    with torch.no_grad():
        torch.manual_seed(1)  # the flow loss draws noise and times
        losses = model(batch)
    assert set(losses) == {"text", "codec", "loss", *NAMED}  # no DiT: no flow loss
    want = losses["text"] + losses["codec"] + sum(c * losses[n] for n, c in NAMED.items())
    assert math.isclose(float(losses["loss"]), float(want), rel_tol=1e-6)
    assert all(float(losses[n]) > 0 for n in NAMED)  # each one computed, none a placeholder zero
    heavier = OmniModel(compose_config(smoke_overrides(batch_dir(cfg), cfg.run_dir, *STRANGER,
                                                       "loss.weights.balance=2.0")))
    heavier.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.manual_seed(1)
        again = heavier.eval()(batch)
    assert math.isclose(float(again["loss"] - losses["loss"]), (2.0 - 0.01) * float(losses["balance"]), rel_tol=1e-4)


def batch_dir(cfg):
    from pathlib import Path

    return Path(str(cfg.data.train_shards)).parent


def test_a_batch_without_spoken_replies_has_no_talker_loss(model_and_batch):
    """The Talker runs on a dummy reply (every step runs every slot), which must add nothing:
    its cross-entropy, its own loss and its auxiliary loss are all 0, the Thinker's are not."""
    from omnitrain.data.collate import collate
    from tests.training.step_weights_helpers import mixed_examples

    cfg, model, _ = model_and_batch
    example = mixed_examples(cfg, batch_dir(cfg), 1)[0]  # its reply made text-only
    silent = collate([example], model.tokenizer.special_id("pad"))
    assert silent.speech_rows.numel() == 0
    with torch.no_grad():
        losses = model(silent)
    assert {n: float(losses[n]) for n in ("codec", "codec_smooth", "talker_z")} == dict.fromkeys(
        ("codec", "codec_smooth", "talker_z"), 0.0)
    assert float(losses["balance"]) > 0 and float(losses["text"]) > 0


def test_encoder_levels_reach_the_thinker_after_its_first_layers(model_and_batch):
    _, model, batch = model_and_batch
    with torch.no_grad():
        thinker, inputs = model.thinker_forward(batch)
        assert inputs.side is not None and len(inputs.side.features) == 2
        assert torch.equal(inputs.side.mask, batch.input_ids == model.audio_id)
        for proj in model.audio_encoder.level_proj:  # the same forward without the levels' content
            proj.weight.mul_(0)
            proj.bias.mul_(0)
        try:
            without, _ = model.thinker_forward(batch)
        finally:
            torch.manual_seed(0)
            fresh = type(model.audio_encoder)(model.audio_encoder.cfg, model.thinker.hidden_size)
            for mine, new in zip(model.audio_encoder.level_proj, fresh.level_proj, strict=True):
                mine.load_state_dict(new.state_dict())
    differ = (thinker.hidden - without.hidden).abs().amax(-1) > 1e-6
    assert differ[inputs.side.mask].all()  # the audio positions changed ...
    row, first = torch.nonzero(inputs.side.mask)[0].tolist()
    assert not differ[row, :first].any()  # ... and nothing before the first (causal)


def test_the_talker_reads_text_embeddings_and_the_thinker_layer_its_context_spec_names_at_media(model_and_batch):
    _, model, batch = model_and_batch
    with torch.no_grad():
        thinker, inputs = model.thinker_forward(batch)
        items = model.speech_items(batch, thinker, inputs.embeds)
    assert sorted(thinker.layers) == [1]  # asked for layer 1 only
    rows, pos, ctx = batch.speech_rows, batch.reply_positions, items.ctx
    want = inputs.embeds[rows[:, None], pos] * batch.reply_mask[..., None]
    assert torch.equal(ctx.reply * batch.reply_mask[..., None], want)  # the reply is text: its embeddings
    media = ctx.prompt_media
    assert media.any()  # a spoken reply to audio: its clip is in the prompt, read at layer 1
    text = ctx.prompt_mask & ~media
    assert found_in(ctx.prompt[media], thinker.layers[1][batch.input_ids == model.audio_id])
    assert found_in(ctx.prompt[text], inputs.embeds[batch.doc_ids > 0])
    assert not found_in(ctx.prompt[text][:1], thinker.layers[1][batch.doc_ids > 0])


def found_in(vectors, pool) -> bool:
    """Each vector is, exactly, one of ``pool``'s rows."""
    return all(bool(((pool - v).abs().amax(-1) == 0).any()) for v in vectors)


def test_a_dits_auxiliary_loss_enters_the_total_and_a_batch_without_speech_adds_none(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, "plugins=[tests.contracts.stranger_plugins]",
                                         "dit=stranger_energy"))
    torch.manual_seed(0)
    model = OmniModel(cfg).eval()
    for weight in model.dit.parameters():  # off AdaLN-zero's start, where the velocity is 0
        torch.nn.init.normal_(weight, std=0.05)
    batches = make_pipeline(cfg, "train", 256)
    spoken = next(b for b in batches if b.speech_rows.numel())
    with torch.no_grad():
        torch.manual_seed(1)
        losses = model(spoken)
    assert float(losses["dit_energy"]) > 0
    want = losses["text"] + losses["codec"] + losses["flow"] + 0.02 * losses["dit_energy"]
    assert math.isclose(float(losses["loss"]), float(want), rel_tol=1e-6)
    silent = dataclasses.replace(spoken, speech_rows=spoken.speech_rows[:0], sizes=None)
    with torch.no_grad():
        assert float(model(silent)["dit_energy"]) == 0.0  # the dummy item keeps the graph, adds no loss


def test_a_loss_weight_no_plugin_declares_is_a_config_error(demo_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"loss.weights.balanse.*\['audio_spread', 'balance', 'codec_smooth', "
                                          r"'talker_z'\]"):
        compose_config(smoke_overrides(demo_dir, tmp_path, *STRANGER, "loss.weights.balanse=1"))
    # the codec's frames/s x the codes vocoder's samples per frame must be speech.sample_rate
    with pytest.raises(ConfigError, match=r"25 codes/s and vocoder=stranger_codes decodes each to 600 samples: "
                                          r"15000 samples/s, but speech.sample_rate=16000"):
        compose_config(smoke_overrides(demo_dir, tmp_path, *STRANGER, "vocoder.samples_per_code=600"))
    # three code groups need a Talker that takes them
    with pytest.raises(ConfigError, match="3 code groups per frame but talker=stranger_own_loss takes one"):
        compose_config(smoke_overrides(demo_dir, tmp_path, *STRANGER, "talker=stranger_own_loss"))
    with pytest.raises(ConfigError, match="loss.weights.balance"):  # without the plugin that declares it
        compose_config(smoke_overrides(demo_dir, tmp_path, "loss.weights={balance: 1}"))


@pytest.mark.slow
@pytest.mark.parametrize("setting", [("trainer.precision=32-true",), ("trainer.precision=bf16-mixed",),
                                     ("strategy=deepspeed_zero2", "trainer.precision=bf16-mixed")],
                         ids=["fp32", "bf16-mixed", "zero2"])
def test_train_validate_resume_export_generate(setting, groups_demo_dir, tmp_path, capsys):
    demo_dir, run = groups_demo_dir, tmp_path / "run"
    args = smoke_overrides(demo_dir, run, *STRANGER, *setting, "trainer.max_steps=2", "trainer.val_check_interval=2",
                           "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1",
                           "trainer.accumulate_grad_batches=2", "checkpoint.every_n_steps=1")
    assert main(["train", *args]) == 0, capsys.readouterr().err[-3000:]
    assert main(["train", *args[:-1], "trainer.max_steps=3", "resume=last"]) == 0, capsys.readouterr().err[-3000:]
    with open(run / "csv" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    for name in ("text", "codec", *NAMED):  # each loss by name, in training and validation
        train = [float(r[f"train/{name}"]) for r in rows if r.get(f"train/{name}")]
        assert len(train) == 3 and all(math.isfinite(v) and v > 0 for v in train), (name, train)
        assert any(r.get(f"val/{name}") for r in rows), name
    assert (run / "checkpoints" / "step-000003.ckpt").exists()  # resumed at 2, saved 3 (a folder under ZeRO)
    bundle = tmp_path / "bundle"
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), str(bundle)]) == 0
    heldout = demo_dir / "heldout" / "manifest.jsonl"
    video = next(json.loads(x) for x in heldout.read_text().splitlines() if "video" in x)  # audio in the video
    capsys.readouterr()
    wav = tmp_path / "reply.wav"
    assert main(["generate", str(bundle), "--text", video["text"], "--video",
                 str(demo_dir / "heldout" / video["video"]), "--speech", str(wav)]) == 0
    assert "reply:" in capsys.readouterr().out
    frames = sf.info(str(wav)).frames
    assert frames > 0 and frames % 640 == 0  # whole codes, each decoded by the vocoder to 640 samples
    streamed = tmp_path / "streamed.wav"
    assert main(["generate", str(bundle), "--text", video["text"], "--video", str(demo_dir / "heldout" / video["video"]),
                 "--speech", str(streamed), "--stream"]) == 0
    assert sf.info(str(streamed)).frames == frames  # the same codes (greedy), decoded in chunks


@pytest.mark.parametrize("chunk", [1, 3, 4])
def test_a_codes_vocoder_streams_what_it_decodes_whole(model_and_batch, chunk):
    """``ChunkedCodes`` decodes each chunk with the vocoder's ``left_context_codes`` before
    it: the pieces, joined, are the whole decode (a causal decoder's)."""
    from omnitrain.inference.chunked_codes import ChunkedCodes

    _, model, _ = model_and_batch
    vocoder = model.vocoder
    torch.manual_seed(3)
    codes = torch.randint(0, model.codec.vocab_size, (1, 23))
    cond = SpeechCondition.none(1, model.speech_cfg.n_mels)
    with torch.no_grad():
        whole = model.decode_speech(codes, torch.ones_like(codes, dtype=torch.bool), cond=cond)[0][0]
    stream = ChunkedCodes(vocoder, cond, chunk)
    pieces = [stream.push(int(c)) for c in codes[0]] + [stream.finish()]
    assert sum(p.numel() > 0 for p in pieces) == -(-23 // chunk)  # a piece every chunk, the rest at the end
    torch.testing.assert_close(torch.cat(pieces), whole, rtol=0, atol=1e-6)  # measured 0 (bit-equal)
