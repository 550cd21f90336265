"""After ``import-hf`` of a tiny random Qwen3-Omni (with a Qwen3-Omni-shaped tokenizer), greedy
``omnitrain generate`` speaks as transformers' ``Qwen3OmniMoeForConditionalGeneration.generate``
with audio output does, on a prompt with text alone and on one with audio (which the Talker
reads as the Thinker's layer-1 states, at position ids recounted over the user turn): the same
reply tokens, the same codes in every group of every frame, the same waveform from Code2Wav."""

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


@pytest.mark.parametrize("with_audio", [False, True])
def test_greedy_speech_equals_transformers(with_audio, release, demo_dir, monkeypatch):
    from transformers import Qwen3OmniMoeForConditionalGeneration

    from omnitrain.data.collate import collate
    from omnitrain.inference.generate import Generator, user_turn
    from tests.plugins.test_qwen3_thinker_parity import hf_inputs

    root, tok = release
    gen = Generator(root / "bundle")
    gen.settings = dataclasses.replace(gen.settings, max_new_tokens=6, max_codec_tokens=10, min_codec_tokens=8,
                                       talker_temperature=0.0, repetition_penalty=1.0)
    audio = str(next((demo_dir / "heldout").glob("*_audio_*"))) if with_audio else None
    conversation = user_turn("what is 3 plus 4?", audio=audio)
    example = gen.prompt(conversation)
    ids = example.input_ids[None]
    inputs = hf_inputs(example, collate([example], tok.special_id("pad")))
    assert ("input_features" in inputs) == with_audio
    reply = gen(conversation, speaker="chelsie")

    hf = Qwen3OmniMoeForConditionalGeneration.from_pretrained(root / "qwen3", dtype=torch.float32).eval()
    seen = {}
    decode = hf.code2wav.chunked_decode

    def capture(codes, *args, **kwargs):  # the codes transformers hands Code2Wav: (1, groups, frames)
        seen["codes"] = codes
        return decode(codes, *args, **kwargs)

    monkeypatch.setattr(hf.code2wav, "chunked_decode", capture)
    with torch.no_grad():
        sequences, wave = hf.generate(
            **inputs, speaker="chelsie", thinker_max_new_tokens=6,
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
