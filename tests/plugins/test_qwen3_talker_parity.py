"""``talker=qwen3_moe`` against transformers' Qwen3-Omni Talker with the same random weights
(fp32, 3 code groups, top-2 of 4 experts with the shared expert, a 2-layer code predictor).

transformers' own code lays out the Talker's input (``Qwen3OmniMoeForConditionalGeneration.
_get_talker_user_parts`` / ``_get_talker_assistant_parts`` on a Thinker's states, as its
``generate`` calls them); omnitrain's Talker reads the same states through a
``TalkerContext``. Teacher-forced on transformers' own greedy codes, every group's logits
equal transformers' step-by-step ones (group 0: the Talker's head; groups 1, 2: the code
predictor, which transformers can only run a group at a time); greedy generation gives
transformers' codes."""

from __future__ import annotations

import pytest
import torch

from omnitrain.slots import TalkerContext
from omnitrain_plugins.qwen3_omni.talker import Qwen3Talker, Qwen3TalkerConfig
from tests.helpers import randomized

pytest.importorskip("transformers")
from transformers.models.qwen3_omni_moe import configuration_qwen3_omni_moe as hfc  # noqa: E402
from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as hf  # noqa: E402

DT, D, Q, CODEBOOK = 24, 32, 3, 48  # Thinker width, Talker width, code groups, codes per group
IDS = dict(codec_pad_id=50, codec_bos_id=51, codec_eos_token_id=52, codec_nothink_id=53, codec_think_bos_id=54,
           codec_think_eos_id=55)
SPEAKERS = {"ethan": 58, "chelsie": 60}
# token ids of the fake Thinker sequence (only their roles matter)
IM_START, USER, ASSISTANT, AUDIO, TEXT, NEWLINE, IM_END = 1, 2, 3, 4, 5, 6, 7
TTS_BOS, TTS_EOS, TTS_PAD = 8, 9, 10


def configs():
    ours = Qwen3TalkerConfig(hidden_size=D, layers=2, heads=4, kv_heads=2, head_dim=8, projection_dim=40,
                             moe_ffn_dim=16, shared_expert_ffn_dim=24, experts=4, top_k=2, mrope_section=[2, 1, 1],
                             rope_theta=1e4, vocab_size=64, codec_pad_id=50, codec_bos_id=51, codec_eos_id=52,
                             codec_nothink_id=53, codec_think_bos_id=54, codec_think_eos_id=55,
                             speaker_ids=[f"{n}:{i}" for n, i in SPEAKERS.items()], predictor_layers=2, predictor_heads=4,
                             predictor_kv_heads=2, predictor_head_dim=8, predictor_ffn_dim=48,
                             predictor_rope_theta=1e4)
    theirs = hfc.Qwen3OmniMoeTalkerConfig(
        text_config=dict(vocab_size=64, hidden_size=D, intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=8, moe_intermediate_size=16,
                         shared_expert_intermediate_size=24, num_experts=4, num_experts_per_tok=2, norm_topk_prob=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 1, 1]}),
        code_predictor_config=dict(vocab_size=CODEBOOK, hidden_size=D, intermediate_size=48, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8, num_code_groups=Q,
                                   rope_parameters={"rope_type": "default", "rope_theta": 1e4}),
        num_code_groups=Q, thinker_hidden_size=DT, spatial_merge_size=2, speaker_id=SPEAKERS, **IDS)
    for sub in (theirs, theirs.text_config, theirs.code_predictor_config):
        sub._attn_implementation = "eager"
    return ours, theirs


class Outer:
    """What transformers' layout helpers read of ``Qwen3OmniMoeForConditionalGeneration``."""

    def __init__(self, talker, config):
        self.talker = talker
        self.config = hfc.Qwen3OmniMoeConfig(talker_config=config.to_dict(), tts_bos_token_id=TTS_BOS,
                                             tts_eos_token_id=TTS_EOS, tts_pad_token_id=TTS_PAD,
                                             im_start_token_id=IM_START, assistant_token_id=ASSISTANT,
                                             user_token_id=USER)


@pytest.fixture(scope="module")
def pair():
    ours_cfg, theirs_cfg = configs()
    torch.manual_seed(0)
    theirs = randomized(hf.Qwen3OmniMoeTalkerForConditionalGeneration(theirs_cfg), 0.2)
    ours = Qwen3Talker(ours_cfg, thinker_hidden_size=DT, codec_vocab_size=CODEBOOK, num_speakers=2,
                       code_groups=Q, speakers=tuple(SPEAKERS)).eval()
    missing, unexpected = ours.load_state_dict(theirs.state_dict(), strict=False)
    assert missing == ["tts_embed.weight"] and unexpected == []
    return ours, theirs


def conversation(reply: int = 5):
    """A user turn with 4 audio tokens, then the assistant's reply (``reply`` tokens + eos):
    ids, the Thinker's input embeddings and its layer-k states (random), the media mask."""
    user = [IM_START, USER, NEWLINE, TEXT, AUDIO, AUDIO, AUDIO, AUDIO, TEXT, IM_END, NEWLINE]
    ids = torch.tensor([user + [IM_START, ASSISTANT, NEWLINE] + [TEXT] * reply + [IM_END]])
    g = torch.Generator().manual_seed(1)
    embed, hidden = torch.randn(1, ids.shape[1], DT, generator=g), torch.randn(1, ids.shape[1], DT, generator=g)
    tts = torch.randn(3, DT, generator=g)  # the Thinker's rows of tts_bos, tts_eos, tts_pad
    return ids, embed, hidden, ids == AUDIO, tts, len(user)


def their_inputs(theirs, speaker: int):
    """transformers' prefill embeds and text track, made by its own helpers from the states its
    ``generate`` has: those of every token but the last generated one (the Thinker's eos)."""
    ids, embed, hidden, media, tts, user_len = conversation()
    embed, hidden = embed[:, :-1], hidden[:, :-1]
    outer = Outer(theirs, theirs.config)
    with torch.no_grad():
        user = hf.Qwen3OmniMoeForConditionalGeneration._get_talker_user_parts(outer, 0, user_len, media, hidden, embed)
        bos, eos, pad = theirs.text_projection(tts)[:, None, None].unbind(0)
        assistant, _, trailing = hf.Qwen3OmniMoeForConditionalGeneration._get_talker_assistant_parts(
            outer, user_len, ids.shape[1] - 1, speaker, embed, pad, bos, eos)
    return torch.cat([user, assistant], 1), trailing, pad


def our_context(ours) -> TalkerContext:
    ids, embed, hidden, media, tts, user_len = conversation()
    with torch.no_grad():
        ours.tts_embed.weight.copy_(tts)
    P = user_len + 3  # the user turn and the reply's role header
    vectors = torch.where(media[..., None], hidden, embed)  # ContextSpec(text_as_embeddings=True)
    return TalkerContext(reply=embed[:, P:], reply_mask=torch.ones(1, ids.shape[1] - P, dtype=torch.bool),
                         prompt=vectors[:, :P], prompt_mask=torch.ones(1, P, dtype=torch.bool),
                         prompt_positions=torch.arange(P)[None, None].expand(3, 1, P),
                         speaker=torch.tensor([1]), prompt_media=media[:, :P])


def their_greedy(theirs, prefill, trailing, pad):
    """transformers' greedy Talker generation (at least 8 frames): its result and the frames
    whose residual codes it drew (1, n, Q)."""
    suppress = [i for i in range(CODEBOOK, 64) if i != IDS["codec_eos_token_id"]]
    with torch.no_grad():
        theirs.rope_deltas = None
        result = theirs.generate(
            inputs_embeds=prefill, trailing_text_hidden=trailing, tts_pad_embed=pad,
            talker_input_ids=torch.full(prefill.shape[:2], TTS_PAD), attention_mask=torch.ones(prefill.shape[:2],
                                                                                              dtype=torch.long),
            max_new_tokens=12, min_new_tokens=8, do_sample=False, repetition_penalty=1.0, suppress_tokens=suppress,
            eos_token_id=IDS["codec_eos_token_id"], output_hidden_states=True, return_dict_in_generate=True)
    return result, torch.stack([h[-1] for h in result.hidden_states if h[-1] is not None], 1)


def test_teacher_forced_logits_equal_transformers_group_by_group(pair):
    ours, theirs = pair
    ctx = our_context(ours)
    prefill, trailing, pad = their_inputs(theirs, SPEAKERS["chelsie"])
    _, frames = their_greedy(theirs, prefill, trailing, pad)  # teacher-forced on transformers' own codes
    assert frames.shape[1] > trailing.shape[1]  # longer than the reply: tts_eos, then pads
    with torch.no_grad():
        # transformers, one forward over [prefill | frames]: each frame's input is the sum of its
        # groups' embeddings plus the text track (its prepare_inputs_for_generation)
        steps = []
        for j in range(frames.shape[1]):
            x = theirs.get_input_embeddings()(frames[:, j, :1]) + sum(
                theirs.code_predictor.get_input_embeddings()[k - 1](frames[:, j, k:k + 1]) for k in range(1, Q))
            steps.append(x + (trailing[:, j:j + 1] if j < trailing.shape[1] else pad))
        x = torch.cat([prefill, *steps], 1)
        out = theirs(inputs_embeds=x, attention_mask=torch.ones(x.shape[:2], dtype=torch.long),
                     output_hidden_states=True)
        n = frames.shape[1] + 1
        want0 = out.logits[:, -n:]  # the codec_bos position, then each frame's
        states = out.hidden_states[0][-1][:, -n:]  # the Talker's last layer, as its generate hands the predictor
        codec_in = torch.cat([torch.full((1, 1, Q), ours.bos_id), frames], 1)
        got = ours(ctx, codec_in, torch.ones(1, n, dtype=torch.bool))
    assert want0.std() > 0.1
    torch.testing.assert_close(got.logits[:, :, 0], want0, rtol=0, atol=1e-5)
    assert got.aux_losses["talker_router"] > 0
    # the code predictor, as transformers' generate runs it: prefill [state, group 0], then a group a step
    predictor = theirs.code_predictor
    for j in range(n - 1):
        target = frames[:, j]
        with torch.no_grad():
            first = theirs.get_input_embeddings()(target[:, :1])
            step = predictor(inputs_embeds=torch.cat([states[:, j:j + 1], first], 1), use_cache=True)
            logits, cache = [step.logits[:, -1]], step.past_key_values
            for k in range(1, Q - 1):
                step = predictor(input_ids=target[:, k:k + 1], past_key_values=cache, use_cache=True,
                                 generation_steps=k)
                logits.append(step.logits[:, -1])
                cache = step.past_key_values
        for k, want in enumerate(logits, 1):
            torch.testing.assert_close(got.logits[0, j, k, :CODEBOOK], want[0], rtol=0, atol=1e-5, msg=(j, k))


def test_greedy_generation_equals_transformers(pair):
    ours, theirs = pair
    ctx = our_context(ours)
    prefill, trailing, pad = their_inputs(theirs, SPEAKERS["chelsie"])
    result, want = their_greedy(theirs, prefill, trailing, pad)
    with torch.no_grad():
        got = ours.generate(ctx, 12, min_tokens=8)
    # group 0 of every frame (transformers' sequences; its eos is a pad here) ...
    first = result.sequences[0].masked_fill(result.sequences[0] == ours.eos_id, ours.pad_id)
    assert len(first) >= 8 and torch.equal(got[0, :, 0], first)
    # ... and every group of the frames whose residual codes transformers made (all but the last: it
    # draws a frame's residual groups when preparing the next step's input)
    assert want.shape[1] == len(first) - 1 and torch.equal(got[:, : want.shape[1]], want)
