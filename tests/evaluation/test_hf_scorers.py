"""``--speaker wavlm:PATH``: a tiny random ``WavLMForXVector`` saved by transformers gives,
through ``omnitrain eval``, exactly the embeddings and cosine similarity transformers gives
on the same real speech; a missing folder is a clear error."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch

from omnitrain.cli import main
from omnitrain.evaluation.scorer_lookup import build_speaker
from tests.evaluation.espeak import speak


@pytest.fixture(scope="module")
def wavlm_dir(tmp_path_factory):
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    folder = tmp_path_factory.mktemp("wavlm")
    cfg = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                      conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                      num_conv_pos_embedding_groups=2, num_buckets=32, max_bucket_distance=64,
                      tdnn_dim=(16, 16, 32), tdnn_kernel=(5, 3, 1), tdnn_dilation=(1, 2, 1), xvector_output_dim=16)
    torch.manual_seed(0)
    WavLMForXVector(cfg).eval().save_pretrained(folder)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder)
    return folder


def reference_embedding(folder, wave):
    from transformers import AutoFeatureExtractor, WavLMForXVector

    model = WavLMForXVector.from_pretrained(folder).eval()
    inputs = AutoFeatureExtractor.from_pretrained(folder)(wave.numpy(), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        return model(**inputs).embeddings[0]


def test_wavlm_gives_what_transformers_gives(wavlm_dir, tmp_path):
    a, b = speak("three seven one", "en-us+m6"), speak("nine four two", "en-us+f2")
    ours = build_speaker(f"wavlm:{wavlm_dir}")
    want_a, want_b = reference_embedding(wavlm_dir, a), reference_embedding(wavlm_dir, b)
    assert torch.equal(ours.embed(a, 16000), want_a)  # measured: bit-equal
    sf.write(tmp_path / "a.wav", a.numpy(), 16000, subtype="FLOAT")
    sf.write(tmp_path / "b.wav", b.numpy(), 16000, subtype="FLOAT")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio": "a.wav", "reference": "b.wav"}) + "\n")
    assert main(["eval", "--audio", str(manifest), "--speaker", f"wavlm:{wavlm_dir}", "--out",
                 str(tmp_path / "r.json")]) == 0
    sim = json.loads((tmp_path / "r.json").read_text())["bundles"]["audio"]["items"][0]["sim"]
    assert sim == pytest.approx(float(torch.nn.functional.cosine_similarity(want_a, want_b, dim=0)), abs=1e-6)


def test_a_missing_folder_says_what_to_give(tmp_path, capsys):
    sf.write(tmp_path / "a.wav", torch.zeros(1600).numpy(), 16000)
    (tmp_path / "m.jsonl").write_text('{"audio": "a.wav", "reference": "a.wav"}\n')
    assert main(["eval", "--audio", str(tmp_path / "m.jsonl"), "--speaker", "wavlm"]) == 2
    assert "wavlm needs a local folder of weights: wavlm:PATH (nothing is downloaded)" in capsys.readouterr().err
    assert main(["eval", "--audio", str(tmp_path / "m.jsonl"), "--speaker", f"wavlm:{tmp_path}/nope"]) == 2
    assert "no such folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    """A tiny random Whisper with a byte-level tokenizer and Whisper's special tokens."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder = tmp_path_factory.mktemp("whisper")
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|translate|>",
                "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    vocab.update({s: len(vocab) + i for i, s in enumerate(specials)})
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tok = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=end, bos_token=end,
                           eos_token=end, pad_token=end)
    tok.add_special_tokens({"additional_special_tokens": specials[1:]})
    cfg = WhisperConfig(vocab_size=len(vocab), num_mel_bins=80, encoder_layers=1, decoder_layers=1, d_model=32,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_source_positions=1500, max_target_positions=64, pad_token_id=vocab[end],
                        decoder_start_token_id=vocab["<|startoftranscript|>"], eos_token_id=vocab[end],
                        bos_token_id=vocab[end])
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config.max_length = 24
    model.save_pretrained(folder / "model")
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tok).save_pretrained(folder / "model")
    return folder / "model"


def test_whisper_gives_what_transformers_gives(whisper_dir, tmp_path):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    wave = speak("three seven one", "en-us+m6")
    processor = WhisperProcessor.from_pretrained(whisper_dir)
    model = WhisperForConditionalGeneration.from_pretrained(whisper_dir).eval()
    with torch.no_grad():
        ids = model.generate(processor(wave.numpy(), sampling_rate=16000, return_tensors="pt").input_features)
    want = processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
    assert want  # a random model says something (bytes), never its special tokens
    sf.write(tmp_path / "a.wav", wave.numpy(), 16000, subtype="FLOAT")
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": "a.wav", "text": "three seven one"}) + "\n")
    assert main(["eval", "--audio", str(tmp_path / "m.jsonl"), "--asr", f"whisper:{whisper_dir}", "--out",
                 str(tmp_path / "r.json")]) == 0
    item = json.loads((tmp_path / "r.json").read_text())["bundles"]["audio"]["items"][0]
    assert item["transcript"] == want and item["wer"] is not None
