"""import-hf: a tiny random Qwen2.5-Omni saved by transformers (sharded, with spk_dict.pt)
becomes a bundle whose every slot computes what transformers computes (fp32: the Thinker, the
DiT and BigVGAN bit for bit, the encoders and the talker to 6e-6 or less)."""

from __future__ import annotations

import json

import pytest
import torch

from omnitrain.bundle import load_bundle
from omnitrain.hf.formats import HFError
from omnitrain.hf.importer import import_hf
from omnitrain.slots import SpeechCondition, TalkerContext
from tests.hf.tiny_qwen_omni import IDS, SPEAKER_BOS, save_tiny

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    hf = save_tiny(root / "qwen")
    summary = import_hf(root / "qwen", root / "bundle")
    model, cfg = load_bundle(root / "bundle")
    return hf, model, cfg, summary, root


def test_summary_and_config_follow_the_checkpoint(imported):
    hf, model, cfg, summary, root = imported
    assert summary["left_random"] == {}
    assert len(list((root / "qwen").glob("model-*.safetensors"))) > 3  # really sharded
    assert cfg.speech.sample_rate == 24000 and cfg.speech.hop_length == 240 and cfg.speech.n_mels == 80
    assert list(cfg.speech.speakers) == list(SPEAKER_BOS)
    assert cfg.vocoder.name == "bigvgan" and cfg.vocoder.upsample_rates == [5, 3, 2, 2, 2, 2]
    assert cfg.thinker.hidden_size == 32 and cfg.talker.head_dim == 16 and model.codec.vocab_size == 65
    kept = json.loads((root / "bundle" / "hf" / "source.json").read_text())
    assert "thinker.audio_tower.audio_bos_eos_token.weight" in kept["tensors"]


def test_thinker_logits_match(imported):
    hf, model, *_ = imported
    torch.manual_seed(0)
    ids = torch.randint(0, 280, (1, 12))
    with torch.no_grad():
        want = hf.thinker(input_ids=ids).logits
        pos = torch.arange(12)[None, None].expand(3, 1, 12)
        hidden = model.thinker(model.thinker.embed(ids), pos, torch.ones(1, 12, dtype=torch.long))
        got = model.thinker.logits(hidden)
    assert torch.equal(got, want)  # measured 0: bit-identical


def test_encoders_match(imported):
    hf, model, *_ = imported
    torch.manual_seed(1)
    lengths = [50, 23]
    feats = [torch.randn(128, n) for n in lengths]
    grids = torch.tensor([[1, 4, 8], [2, 4, 4]])
    patches = torch.randn(int(grids.prod(-1).sum()), 3 * 2 * 14 * 14)
    with torch.no_grad():
        want_a = hf.thinker.model.audio_tower(torch.cat(feats, 1), feature_lens=torch.tensor(lengths)).last_hidden_state
        padded = torch.stack([torch.nn.functional.pad(f, (0, 50 - f.shape[1])) for f in feats])
        got_a = model.audio_encoder(padded, torch.tensor(lengths))
        want_v = hf.thinker.model.visual(patches, grid_thw=grids).pooler_output
        got_v = model.vision_encoder(patches, grids)
    assert (got_a - want_a).abs().max().item() < 1e-6  # measured 1.2e-7
    assert (got_v - want_v).abs().max().item() < 6e-6  # measured 6.6e-7


def test_talker_logits_match(imported):
    """transformers' talker prefill over [prompt | speaker bos | reply_0] with a reply queue
    (the reply, text_eos, text_pad), decoded code by code, against dual_track's
    teacher-forced forward; the speaker and text rows come from the Thinker's table."""
    hf, model, cfg, *_ = imported
    talker, ours = hf.talker, model.talker
    talker.rope_deltas = None
    embed = hf.thinker.get_input_embeddings().weight.detach()
    torch.manual_seed(2)
    L, G = 6, 3  # G reply rows, the last the Thinker's eos (replaced by text_eos)
    prompt_ids = torch.randint(0, 280, (1, L))
    prompt, reply = torch.randn(1, L, 32), torch.randn(1, G, 32)
    speaker = 1  # Ethan
    spk = embed[SPEAKER_BOS["Ethan"]]
    text_eos, text_pad = embed[308], embed[309]
    codes = torch.randint(0, 65, (G + 4,)).tolist()  # runs past text_eos into text_pad
    prefix = torch.cat([prompt, spk[None, None], reply[:, :1]], 1)
    queue = torch.cat([reply[:, 1:-1], text_eos[None, None], text_pad[None, None]], 1)
    with torch.no_grad():
        out = talker(input_ids=torch.tensor([[74] * L + [70, 71]]), inputs_embeds=prefix.clone(),
                     attention_mask=torch.ones(1, L + 2, dtype=torch.long),
                     input_text_ids=torch.cat([prompt_ids, torch.tensor([[307, 50]])], 1),
                     thinker_reply_part=queue, use_cache=True)
        want = [out.logits[:, -1]]
        for s, c in enumerate(codes[:-1]):
            out = talker(input_ids=torch.tensor([[c]]), attention_mask=torch.ones(1, L + 3 + s, dtype=torch.long),
                         past_key_values=out.past_key_values, thinker_reply_part=out.thinker_reply_part,
                         use_cache=True)
            want.append(out.logits[:, -1])
        want = torch.stack(want, 1)
        # transformers' logits are over its 80-row table; dual_track's over codes + its 4 specials
        want = torch.cat([want[..., :65], want[..., [70, 71, 72, 74]]], -1)
        position_ids = torch.arange(L)[None, None].expand(3, 1, L)
        ctx = TalkerContext(reply, torch.ones(1, G, dtype=torch.bool), prompt, torch.ones(1, L, dtype=torch.bool),
                            position_ids, torch.tensor([speaker]))
        codec_in = torch.tensor([[ours.bos_id] + codes[:-1]])
        got = ours(ctx, codec_in, torch.ones_like(codec_in, dtype=torch.bool))
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < 1.5e-6  # measured 1.8e-7


def test_dit_and_bigvgan_match(imported):
    hf, model, *_ = imported
    dit, voc = hf.token2wav.code2wav_dit_model, hf.token2wav.code2wav_bigvgan_model
    cond_vec = torch.load(imported[4] / "qwen" / "spk_dict.pt")["Chelsie"]["cond"]
    torch.manual_seed(3)
    code, T = torch.randint(0, 65, (1, 11)), 22
    x, ref = torch.randn(1, T, 80), torch.randn(1, 30, 80)
    t = torch.tensor(0.3)
    with torch.no_grad():
        want = dit(hidden_states=x, condition_vector=ref, speaker_embedding=cond_vec[None, None].expand(1, T, 8),
                   quantized_code=code, time_step=t, apply_cfg=False)
        cond = SpeechCondition(torch.tensor([0]), ref, torch.tensor([30]))
        got = model.dit(x, t[None], code, torch.ones(1, 11, dtype=torch.bool), torch.tensor([False]), cond)
        assert (got - want).abs().max().item() < 2e-6  # measured 2.4e-7
        log_mel = torch.randn(1, 80, 9) - 4.0  # natural-log magnitudes, as the DiT makes them
        wave_want = voc(log_mel)
        wave_got = model.vocoder(log_mel.transpose(1, 2))[0]
    assert wave_got.shape == wave_want.shape == (9 * 240,)
    assert torch.equal(wave_got, wave_want)  # measured 0: bit-identical
    assert wave_want.abs().max() > 1e-3


def test_refuses_what_is_not_a_hf_folder_and_a_full_output(imported, tmp_path):
    *_, root = imported
    with pytest.raises(HFError, match="not a Hugging Face model folder"):
        import_hf(tmp_path, tmp_path / "out")
    with pytest.raises(HFError, match="not empty"):
        import_hf(root / "qwen", root / "bundle")


def test_thinker_only_folder_imports_what_it_has(tmp_path):
    hf = save_tiny(tmp_path / "qwen", talker=False)
    assert not any(k.startswith("talker.") for k in hf.state_dict())
    summary = import_hf(tmp_path / "qwen", tmp_path / "bundle")
    assert set(summary["left_random"]) == {"talker", "dit", "vocoder"}
    model, _ = load_bundle(tmp_path / "bundle")
    ids = torch.randint(0, 280, (1, 7))
    with torch.no_grad():
        want = hf.thinker(input_ids=ids).logits
        pos = torch.arange(7)[None, None].expand(3, 1, 7)
        got = model.thinker.logits(model.thinker(model.thinker.embed(ids), pos, torch.ones(1, 7, dtype=torch.long)))
    assert torch.equal(got, want)  # measured 0: bit-identical (20 random prompts)
    assert IDS["audio_token_index"] == 300


def test_cli_import_prints_the_summary_and_the_fine_tuning_command(tmp_path, capsys):
    from omnitrain.cli import main

    save_tiny(tmp_path / "qwen", talker=False)
    assert main(["import-hf", str(tmp_path / "qwen"), str(tmp_path / "bundle")]) == 0
    out = capsys.readouterr().out
    assert "the folder has no talker weights" in out and "hf/overrides.txt" in out
    assert (tmp_path / "bundle" / "hf" / "overrides.txt").read_text().splitlines()[0] == "thinker=qwen2"
    assert main(["import-hf", str(tmp_path / "nothing"), str(tmp_path / "b2")]) == 2
    assert "not a Hugging Face model folder" in capsys.readouterr().err


def test_generate_conditions_the_dit_on_each_voices_ref_mel(imported):
    """transformers conditions the DiT on spk_dict.pt's ref_mel; so does generate by default."""
    from omnitrain.inference.generate import Generator

    *_, root = imported
    voices = torch.load(root / "qwen" / "spk_dict.pt")
    cond = Generator(root / "bundle").condition("Ethan")
    assert int(cond.speaker) == 1
    assert torch.equal(cond.reference[0], voices["Ethan"]["ref_mel"]) and int(cond.reference_lengths) == 30


def test_speech_mel_is_bigvgans(imported):
    """The imported speech config computes BigVGAN's mel (Qwen's token2wav): reflect-padded
    by (n_fft - hop) / 2, no centring, sqrt(|X|^2 + 1e-9), slaney mel, natural log."""
    from omnitrain.features.speech_mel import SpeechMel

    _, _, cfg, *_ = imported
    assert cfg.speech.padding == "bigvgan"
    mel = SpeechMel(cfg.speech)
    torch.manual_seed(4)
    wave = torch.randn(24000 // 5) * 0.1
    pad = (1024 - 240) // 2
    padded = torch.nn.functional.pad(wave[None, None], (pad, pad), mode="reflect")[0, 0]
    spec = torch.stft(padded, 1024, 240, 1024, torch.hann_window(1024), center=False, return_complex=True)
    spec = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + 1e-9)
    want = torch.log((mel.filterbank.T @ spec).clamp_min(1e-5)).T
    got = mel(wave)
    assert got.shape == want.shape == (24000 // 5 // 240, 80)
    assert torch.equal(got, want)  # measured 0: bit-identical


def test_generate_gives_transformers_greedy_text_and_codec_tokens(imported, monkeypatch):
    """Greedy generate from the bundle vs transformers' generate on the same prompt ids: the
    Thinker's reply feeds the Talker in both, and the codec tokens are the same. transformers'
    Talker scores all 80 rows of its table; the ids that are neither codes nor pad/bos/eos
    (mask and unused rows, which dual_track does not hold and never emits) are suppressed there."""
    import dataclasses

    from transformers import LogitsProcessorList, SuppressTokensLogitsProcessor

    from omnitrain.inference.generate import Generator, user_turn

    hf, *_, root = imported
    hf.load_speakers(str(root / "qwen" / "spk_dict.pt"))
    gen = Generator(root / "bundle")
    gen.settings = dataclasses.replace(gen.settings, max_new_tokens=6, max_codec_tokens=12, talker_temperature=0.0,
                                       repetition_penalty=1.0, min_codec_tokens=0, ode_steps=2)
    conversation = user_turn("what is 7?")
    ids = gen.prompt(conversation).input_ids[None]
    reply = gen(conversation, speaker="Ethan")

    class Captured(Exception):
        pass

    seen = {}
    talker_generate = hf.talker.generate

    def capture(*args, **kwargs):  # the codes, before token2wav runs
        out = talker_generate(*args, **kwargs)
        seen["text"] = kwargs["input_text_ids"][0, ids.shape[1]:].tolist()
        seen["codes"] = out[0, kwargs["input_ids"].shape[1]:].tolist()
        raise Captured

    monkeypatch.setattr(hf.talker, "generate", capture)
    suppress = SuppressTokensLogitsProcessor([i for i in range(65, 80) if i not in (70, 71, 72)])
    with torch.no_grad(), pytest.raises(Captured):
        hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), speaker="Ethan", generation_mode="audio",
                    thinker_max_new_tokens=6, thinker_do_sample=False, thinker_eos_token_id=gen.eos,
                    talker_max_new_tokens=12, talker_do_sample=False, talker_repetition_penalty=1.0,
                    talker_eos_token_id=[70, 72], talker_logits_processor=LogitsProcessorList([suppress]))
    assert len(reply.token_ids) == 6 and len(reply.codec_tokens) == 12
    assert reply.codec_tokens.tolist() == seen["codes"]
    # transformers' talker text ids: the prompt, the voice's bos_token, the Thinker's first reply token
    assert seen["text"] == [SPEAKER_BOS["Ethan"], reply.token_ids[0]]


def test_a_failed_import_leaves_no_half_bundle(tmp_path):
    save_tiny(tmp_path / "qwen", talker=False)
    config = json.loads((tmp_path / "qwen" / "config.json").read_text())
    config["thinker_config"]["text_config"]["intermediate_size"] = 96  # the shards say 64
    (tmp_path / "qwen" / "config.json").write_text(json.dumps(config))
    with pytest.raises(HFError, match="has shape"):
        import_hf(tmp_path / "qwen", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()
