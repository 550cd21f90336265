"""The speech stages on real shards: dual-track Talker + flow_dit trained by Lightning,
metrics and audio logged (wandb offline), init_from between stages, the adversarial
vocoder stage, export, and streaming generation from the bundle."""

from __future__ import annotations

import csv

import pytest
import soundfile as sf
import torch

from omnitrain.bundle import export_bundle
from omnitrain.cli import main
from omnitrain.inference.generate import Generator, user_turn
from omnitrain.inference.streaming import AudioPiece, TextPiece
from omnitrain.training.stages.vocoder_module import VocoderModule
from tests.helpers import speech_overrides

TINY_BIGVGAN = [
    "vocoder=bigvgan", "vocoder.channels=16", "vocoder.upsample_rates=[10,8,4]",
    "vocoder.upsample_kernel_sizes=[20,16,8]", "vocoder.resblock_kernel_sizes=[3]",
    "vocoder.resblock_dilations=[[1,3]]", "vocoder.mpd_periods=[2,3]",
    "vocoder.mrd_resolutions=[[256,64,256]]", "vocoder.disc_channels=4", "vocoder.context_frames=4",
]


@pytest.fixture(scope="module")
def speech_run(demo_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("speech")
    torch.manual_seed(0)
    assert main(["train", *speech_overrides(demo_dir, run)[:-1], "logger=offline"]) == 0
    return run


@pytest.fixture(scope="module")
def bundle(speech_run, tmp_path_factory):
    return export_bundle(speech_run / "checkpoints" / "last.ckpt", tmp_path_factory.mktemp("b") / "bundle")


def _metrics(run):
    with open(run / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _weights(path):
    state = torch.load(path, weights_only=True, map_location="cpu")["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("model.")}


def test_speech_stage_logs_losses_metrics_and_audio(speech_run):
    rows = _metrics(speech_run)
    for name in ("train/codec", "train/flow", "val/codec_acc", "val/codec_gen_acc", "val/mel_l1"):
        assert any(r.get(name) for r in rows), name
    wav = speech_run / "samples" / "step-000006" / "true_codes.wav"
    info = sf.info(str(wav))
    assert info.samplerate == 16000 and info.frames > 0
    assert list(speech_run.glob("wandb/**/media/audio/**/*.wav")), "no audio logged to wandb"


def test_init_from_starts_a_stage_from_the_last(speech_run, demo_dir, tmp_path):
    first = speech_run / "checkpoints" / "last.ckpt"
    run = tmp_path / "stage2"
    assert main(["train", *speech_overrides(demo_dir, run, f"init_from={first}", "trainer.max_steps=2",
                                            "optim.freeze=[thinker,audio_encoder,vision_encoder]",
                                            "trainer.val_check_interval=2")]) == 0
    before, after = _weights(first), _weights(run / "checkpoints" / "last.ckpt")
    assert all(torch.equal(v, after[k]) for k, v in before.items() if k.startswith("model.thinker."))
    assert any(not torch.equal(v, after[k]) for k, v in before.items() if k.startswith("model.talker."))


def test_vocoder_stage_trains_the_vocoder_alone_and_exports(speech_run, demo_dir, tmp_path, monkeypatch):
    """The GAN stage moves every vocoder and discriminator tensor from where training
    started, and the slots it starts from stay as the previous stage left them."""
    first = speech_run / "checkpoints" / "last.ckpt"
    run = tmp_path / "vocoder"
    started = {}

    def snapshot(module):  # the vocoder and discriminators as training starts
        started.update({k: v.detach().clone() for k, v in module.state_dict().items()})

    monkeypatch.setattr(VocoderModule, "on_train_start", snapshot)
    overrides = speech_overrides(demo_dir, run, *TINY_BIGVGAN, "task=vocoder", f"init_from={first}",
                                 "vocoder_train.segment_frames=8", "trainer.gradient_clip_val=null",
                                 "trainer.max_steps=4", "trainer.val_check_interval=2",
                                 "checkpoint.every_n_steps=4", "trainer.log_every_n_steps=1")
    assert main(["train", *overrides]) == 0
    rows = _metrics(run)
    for name in ("train/gen", "train/disc", "train/mel_l1", "val/mel_l1"):
        assert any(r.get(name) for r in rows), name
    # max_steps=4 counts both optimizers' steps: 2 batches, each stepping the two
    assert len([r for r in rows if r.get("train/gen")]) == 2
    before, after = _weights(first), _weights(run / "checkpoints" / "last.ckpt")
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    assert state.keys() == started.keys()
    trained = [k for k in started if k.startswith(("model.vocoder.", "discriminator."))]
    unchanged = [k for k in trained if torch.equal(started[k], state[k])]
    assert trained and not unchanged, f"not trained: {unchanged[:5]}"
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # the rest stayed as it was
    assert after.keys() - before.keys() == {k for k in trained if k.startswith("model.vocoder.")}
    bundle = export_bundle(run / "checkpoints" / "last.ckpt", tmp_path / "bundle")
    out = tmp_path / "reply.wav"
    assert main(["generate", str(bundle), "--text", "Say 1 2.", "--speech", str(out), "--stream"]) == 0
    assert sf.info(str(out)).samplerate == 16000


def test_wrong_stage_settings_fail_before_work(demo_dir, tmp_path, capsys):
    assert main(["train", *speech_overrides(demo_dir, tmp_path, "task=vocoder")]) == 2
    err = capsys.readouterr().err
    assert "vocoder=griffin_lim has no weights" in err and "gradient_clip_val=null" in err
    assert main(["train", *speech_overrides(demo_dir, tmp_path, "init_from=nope.ckpt")]) == 2
    assert "init_from=nope.ckpt" in capsys.readouterr().err
    assert main(["train", *speech_overrides(demo_dir, tmp_path, "generate.speaker=nobody",
                                            "dit.look_ahead_layers=[7]")]) == 2
    err = capsys.readouterr().err
    assert "generate.speaker='nobody' is not one of speech.speakers" in err and "layers [7] do not exist" in err


def test_streaming_from_the_bundle_equals_the_whole_reply(bundle, tmp_path, capsys):
    gen = Generator(bundle)
    conversation = user_turn("Say 4 2.")
    whole = gen(conversation)
    pieces = list(gen.stream(conversation))
    reply = pieces[-1]
    text = "".join(p.text for p in pieces if isinstance(p, TextPiece))
    audio = [p for p in pieces if isinstance(p, AudioPiece)]
    assert reply.text == whole.text == text
    assert reply.codec_tokens.tolist() == whole.codec_tokens.tolist() and whole.codec_tokens.numel() > 12
    assert torch.equal(reply.mel, whole.mel)  # measured: bit-identical (1 and 2 threads)
    assert len(audio) > 1 and sum(p.wave.numel() for p in audio) == reply.mel.shape[0] * 320
    # an audio chunk came out while the Talker was still speaking
    first_audio = next(i for i, p in enumerate(pieces) if isinstance(p, AudioPiece))
    assert first_audio < len(pieces) - 2
    out = tmp_path / "streamed.wav"
    assert main(["generate", str(bundle), "--text", "Say 4 2.", "--speech", str(out), "--stream"]) == 0
    assert "first audio after" in capsys.readouterr().out
    assert sf.info(str(out)).frames == sum(p.wave.numel() for p in audio)


def test_generation_names_an_unknown_speaker_or_missing_reference(bundle, demo_dir, tmp_path, capsys):
    assert main(["generate", str(bundle), "--text", "Say 1 2.", "--speaker", "nobody"]) == 2
    assert "unknown speaker 'nobody'; this model knows ['default']" in capsys.readouterr().err
    assert main(["generate", str(bundle), "--text", "Say 1 2.", "--reference", str(tmp_path / "no.wav")]) == 2
    assert "no.wav" in capsys.readouterr().err
    ref = next((demo_dir / "heldout").glob("*.wav"), None) or next((demo_dir / "heldout").glob("*.flac"))
    out = tmp_path / "with_ref.wav"
    assert main(["generate", str(bundle), "--text", "Say 1 2.", "--reference", str(ref),
                 "--speaker", "default", "--speech", str(out)]) == 0
    assert sf.info(str(out)).samplerate == 16000
