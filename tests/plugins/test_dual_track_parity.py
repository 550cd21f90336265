"""dual_track == transformers' Qwen2.5-Omni talker (fp32, 1e-6) through the weight mapping.

A tiny random transformers talker (weights perturbed so nothing is trivially zero) is
run the way ``Qwen2_5OmniForConditionalGeneration.generate`` runs it: a masked prefill
over [prompt | speaker bos | reply_0] with TMRoPE positions for an image prompt, then
one decode step per codec token fed from the reply queue (reply tokens, text_eos,
text_pad...). Our teacher-forced forward over the same tokens must give the same logits,
and so must our incremental (KV-cache) decoding.
"""

from __future__ import annotations

import pytest
import torch

from omnitrain.plugin_loading import load_plugins
from omnitrain.positions.layout import ImageSeg, TextSeg
from omnitrain.registry import build
from omnitrain.slots import TalkerContext
from omnitrain_plugins.qwen_omni.dual_track_talker import DualTrackTalker, DualTrackTalkerConfig
from omnitrain_plugins.qwen_omni.weights import TalkerIds, talker_from_transformers

transformers = pytest.importorskip("transformers")

IDS = dict(audio_token_index=1, image_token_index=2, video_token_index=3, audio_start_token_id=4,
           audio_end_token_id=5, vision_start_token_id=7, vision_end_token_id=8)
CODEC = TalkerIds(codec_pad=60, codec_bos=61, codec_eos=62, codec_mask=63)


def hf_talker():
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import Qwen2_5OmniTalkerConfig
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
        Qwen2_5OmniTalkerForConditionalGeneration,
    )

    cfg = Qwen2_5OmniTalkerConfig(
        vocab_size=64, embedding_size=32, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [1, 1, 2]},
        position_id_per_seconds=25, seconds_per_chunk=2, spatial_merge_size=2,
        tts_text_start_token_id=90, tts_text_end_token_id=91, tts_text_pad_token_id=92,
        tts_codec_pad_token_id=60, tts_codec_start_token_id=61, tts_codec_end_token_id=62,
        tts_codec_mask_token_id=63, **IDS,
    )
    cfg._attn_implementation = "eager"
    model = Qwen2_5OmniTalkerForConditionalGeneration(cfg).eval().float()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def pair():
    load_plugins()
    torch.manual_seed(0)
    hf = hf_talker()
    position = build("position", {"name": "tmrope", "theta": 1e6})
    ours = DualTrackTalker(
        DualTrackTalkerConfig(dim=16, layers=2, heads=2, kv_heads=1, head_dim=8, ffn_dim=24),
        thinker_hidden_size=32, codec_vocab_size=60, position=position, num_speakers=2,
    ).eval()
    text_eos, text_pad, spk = torch.randn(32), torch.randn(32), [torch.randn(32), torch.randn(32)]
    state = talker_from_transformers(hf.state_dict(), 60, CODEC, text_eos, text_pad, spk)
    ours.load_state_dict(state, strict=True)
    return hf, ours, text_eos, text_pad, spk


def run_hf(hf, prompt, prompt_ids, grid, spk_emb, reply, text_eos, text_pad, codes):
    """Prefill + one decode step per code, exactly as generate() drives the talker."""
    L = prompt.shape[1]
    hf.rope_deltas = None
    prefix = torch.cat([prompt, spk_emb[None, None], reply[:, :1]], 1)
    queue = torch.cat([reply[:, 1:-1], text_eos[None, None], text_pad[None, None]], 1)
    text_ids = torch.cat([prompt_ids, torch.tensor([[90, 50]])], 1)
    talker_ids = torch.tensor([[CODEC.codec_mask] * L + [CODEC.codec_pad, CODEC.codec_bos]])
    with torch.no_grad():
        out = hf(input_ids=talker_ids, inputs_embeds=prefix.clone(), attention_mask=torch.ones(1, L + 2, dtype=torch.long),
                 input_text_ids=text_ids, image_grid_thw=grid, thinker_reply_part=queue, use_cache=True)
        logits = [out.logits[:, -1]]
        for s, c in enumerate(codes[:-1]):
            out = hf(input_ids=torch.tensor([[c]]), attention_mask=torch.ones(1, L + 3 + s, dtype=torch.long),
                     past_key_values=out.past_key_values, thinker_reply_part=out.thinker_reply_part,
                     use_cache=True)
            logits.append(out.logits[:, -1])
    return torch.stack(logits, 1)


@pytest.mark.parametrize("G", [1, 2, 4])
def test_dual_track_matches_transformers_talker(pair, G):
    hf, ours, text_eos, text_pad, spk = pair
    torch.manual_seed(G)
    # prompt: 2 text tokens, an image (patch grid 1x4x4 -> 2x2 merged tokens), 1 text token
    prompt_ids = torch.tensor([[50, 51, 7, 2, 2, 2, 2, 8, 52]])
    grid = torch.tensor([[1, 4, 4]])
    layout = [TextSeg(2), ImageSeg((1, 2, 2)), TextSeg(1)]
    prompt = torch.randn(1, 9, 32)
    reply = torch.randn(1, G, 32)  # G reply tokens, the last is the Thinker's eos
    codes = torch.randint(0, 60, (G + 4,)).tolist()  # runs past text_eos into text_pad
    want = run_hf(hf, prompt, prompt_ids, grid, spk[1], reply, text_eos, text_pad, codes)

    position_ids = ours.position.position_ids(layout)[:, None]
    ctx = TalkerContext(reply, torch.ones(1, G, dtype=torch.bool), prompt,
                        torch.ones(1, 9, dtype=torch.bool), position_ids, torch.tensor([1]))
    codec_in = torch.tensor([[ours.bos_id] + codes[:-1]])
    with torch.no_grad():
        got = ours(ctx, codec_in, torch.ones_like(codec_in, dtype=torch.bool))
    assert (got - want).abs().max().item() < 1e-6  # measured 1.5e-7

    # left padding in a batch changes nothing
    pad = 3
    ctx2 = TalkerContext(
        torch.cat([reply, torch.randn(1, G, 32)]), torch.ones(2, G, dtype=torch.bool),
        torch.cat([torch.cat([torch.zeros(1, pad, 32), prompt], 1), torch.randn(1, 9 + pad, 32)]),
        torch.tensor([[False] * pad + [True] * 9, [True] * (9 + pad)]),
        torch.cat([torch.cat([torch.zeros(3, 1, pad, dtype=torch.long), position_ids], 2),
                   ours.position.position_ids([TextSeg(9 + pad)])[:, None]], 1),
        torch.tensor([1, 0]),
    )
    with torch.no_grad():
        got2 = ours(ctx2, codec_in.expand(2, -1), torch.ones(2, len(codes), dtype=torch.bool))
    assert (got2[:1] - want).abs().max().item() < 1e-6  # measured 1.5e-7


def test_incremental_decoding_equals_teacher_forcing(pair):
    _, ours, *_ = pair
    torch.manual_seed(3)
    ctx = TalkerContext(torch.randn(1, 3, 32), torch.ones(1, 3, dtype=torch.bool), torch.randn(1, 5, 32),
                        torch.ones(1, 5, dtype=torch.bool),
                        ours.position.position_ids([TextSeg(5)])[:, None], torch.tensor([0]))
    codes = ours.generate(ctx, 8)[0]
    n = int((codes != ours.pad_id).sum())
    codec_in = torch.tensor([[ours.bos_id] + codes[:n].tolist()])
    with torch.no_grad():
        logits = ours(ctx, codec_in, torch.ones_like(codec_in, dtype=torch.bool))
    logits[..., [ours.bos_id, ours.mask_id]] = float("-inf")
    teacher = logits.argmax(-1)[0, : n + (1 if n < 8 else 0)]
    assert teacher[:n].tolist() == codes[:n].tolist()
    # the streaming path, fed reply rows one by one, decides the same tokens
    streamed = list(ours.stream(ctx, iter(ctx.reply[0]), 8))
    assert streamed == codes[:n].tolist()
