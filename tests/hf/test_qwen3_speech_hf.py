"""After ``import-hf`` of a tiny random Qwen3-Omni (with a Qwen3-Omni-shaped tokenizer), greedy
``omnitrain generate`` speaks as transformers' ``Qwen3OmniMoeForConditionalGeneration.generate``
with audio output does, on a prompt with text alone and on one with audio (which the Talker
reads as the Thinker's layer-1 states, at position ids recounted over the user turn): the same
reply tokens, the same codes in every group of every frame, the same waveform from Code2Wav.
And after 5 steps of fine-tuning with a new voice, the exported folder speaks in it through
transformers as omnitrain does."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

from omnitrain.hf.importer import import_hf
from omnitrain.registry import build
from tests.hf.tiny_qwen3_omni import save_tiny
from tests.plugins.test_qwen3_tokenizer import make_qwen3_tokenizer

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen3_speech")
    tok_dir = make_qwen3_tokenizer(root / "tok")
    tok = build("tokenizer", {"name": "qwen3_omni", "path": str(tok_dir)})
    ids = {"im_start_token_id": tok.im_start, "im_end_token_id": tok.im_end,
           "user_token_id": tok.turn_tokens("user").open[1], "assistant_token_id": tok.turn_tokens("assistant").open[1],
           "system_token_id": tok.turn_tokens("system").open[1], "audio_token_id": tok.special_id("audio"),
           "image_token_id": tok.special_id("image"), "video_token_id": tok.special_id("video"),
           "audio_start_token_id": tok.special_id("audio_bos"), "vision_start_token_id": tok.special_id("vision_bos"),
           "tts_bos_token_id": 445, "tts_eos_token_id": 446, "tts_pad_token_id": 447}
    save_tiny(root / "qwen3", vocab=448, token_ids=ids)
    for path in tok_dir.iterdir():
        shutil.copy2(path, root / "qwen3" / path.name)
    import_hf(root / "qwen3", root / "bundle")
    return root, tok


def speaks_as_transformers(bundle, folder, tok, speaker: str, audio: str | None, monkeypatch) -> None:
    """Greedy speech of ``bundle`` (omnitrain) and ``folder`` (transformers) on one prompt."""
    from transformers import Qwen3OmniMoeForConditionalGeneration

    from omnitrain.data.collate import collate
    from omnitrain.inference.generate import Generator, user_turn
    from tests.plugins.test_qwen3_thinker_parity import hf_inputs

    gen = Generator(bundle)
    gen.settings = dataclasses.replace(gen.settings, max_new_tokens=6, max_codec_tokens=10, min_codec_tokens=8,
                                       talker_temperature=0.0, repetition_penalty=1.0)
    conversation = user_turn("what is 3 plus 4?", audio=audio)
    example = gen.prompt(conversation)
    ids = example.input_ids[None]
    inputs = hf_inputs(example, collate([example], tok.special_id("pad")))
    assert ("input_features" in inputs) == (audio is not None)
    reply = gen(conversation, speaker=speaker)

    hf = Qwen3OmniMoeForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    seen = {}
    decode = hf.code2wav.chunked_decode

    def capture(codes, *args, **kwargs):  # the codes transformers hands Code2Wav: (1, groups, frames)
        seen["codes"] = codes
        return decode(codes, *args, **kwargs)

    monkeypatch.setattr(hf.code2wav, "chunked_decode", capture)
    with torch.no_grad():
        sequences, wave = hf.generate(
            **inputs, speaker=speaker, thinker_max_new_tokens=6,
            thinker_do_sample=False, thinker_eos_token_id=tok.im_end, talker_max_new_tokens=10,
            talker_min_new_tokens=8, talker_do_sample=False, talker_repetition_penalty=1.0)
    assert sequences[0, ids.shape[1]:].tolist() == reply.token_ids
    want = seen["codes"][0].T  # (frames, groups): every frame whose residual codes transformers drew
    assert want.shape[0] >= 7 and want.shape[1] == 3
    assert len({tuple(f) for f in want.tolist()}) > 3 and all(len(set(want[:, g].tolist())) > 2 for g in range(3))
    assert torch.equal(reply.codec_tokens[: want.shape[0]], want)
    wave = wave.reshape(-1)
    assert wave.std() > 0.01
    torch.testing.assert_close(reply.wave[: wave.numel()], wave, rtol=0, atol=1e-5)


@pytest.mark.parametrize("with_audio", [False, True])
def test_greedy_speech_equals_transformers(with_audio, release, demo_dir, monkeypatch):
    root, tok = release
    audio = str(next((demo_dir / "heldout").glob("*_audio_*"))) if with_audio else None
    speaks_as_transformers(root / "bundle", root / "qwen3", tok, "chelsie", audio, monkeypatch)


def test_a_voice_added_by_fine_tuning_speaks_through_transformers(release, tmp_path, monkeypatch):
    """5 steps from the imported bundle with a new voice first in speech.speakers (the demo's
    replies take the first voice), the Thinker and Talker training: export --format hf gives
    the voice the next free row of the Talker's table in config.json's speaker_id, and
    transformers speaks in it as omnitrain does."""
    import json

    from omnitrain.bundle import export_bundle
    from omnitrain.cli import main
    from tests.hf.tiny_qwen3_omni import codes_demo

    root, tok = release
    data = codes_demo(tmp_path / "data")
    overrides = (root / "bundle" / "hf" / "overrides.txt").read_text().split()
    run = tmp_path / "run"
    assert main(["train", "recipe=smoke", *overrides, f"init_from={root / 'bundle'}", "speech.speakers=[myvoice,chelsie,ethan]",
                 f"data.train_shards={data}/train-*.tar", f"data.val_shards={data}/val-*.tar", f"run_dir={run}",
                 "logger=csv", "trainer.max_steps=5", "trainer.limit_val_batches=0", "checkpoint.every_n_steps=5",
                 "optim.lr=1e-3", "optim.warmup_steps=0"]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    assert main(["export", str(ckpt), str(tmp_path / "hf"), "--format", "hf"]) == 0
    voices = json.loads((tmp_path / "hf" / "config.json").read_text())["talker_config"]["speaker_id"]
    assert voices == {"myvoice": 82, "chelsie": 81, "ethan": 80}  # after the specials (up to 75) and 80, 81
    speaks_as_transformers(export_bundle(ckpt, tmp_path / "bundle"), tmp_path / "hf", tok, "myvoice", None,
                           monkeypatch)
