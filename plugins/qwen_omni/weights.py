"""Weight mappings from transformers' Qwen2.5-Omni checkpoints to omnitrain plugins.

Adapters, not an if/elif chain: each function takes a transformers state dict (keys as
in the checkpoint, with the ``talker.`` / ``token2wav.code2wav_dit_model.`` prefix
removed) and returns the state dict of the omnitrain module. They load the released
model's speech side into ``dual_track`` and ``flow_dit``, and the parity tests use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class TalkerIds:
    """Where transformers' talker keeps what the ``dual_track`` plugin keeps by role."""

    codec_pad: int  # tts_codec_pad_token_id (8292 in the 7B)
    codec_bos: int  # tts_codec_start_token_id (8293)
    codec_eos: int  # tts_codec_end_token_id (8294)
    codec_mask: int  # tts_codec_mask_token_id (8296)


def _codec_rows(weight: Tensor, codec_vocab_size: int, ids: TalkerIds) -> Tensor:
    """Codes 0..V-1 as they are, then the specials in dual_track's order pad, bos, eos, mask."""
    special = [ids.codec_pad, ids.codec_bos, ids.codec_eos, ids.codec_mask]
    return torch.cat([weight[:codec_vocab_size], weight[special]])


def talker_from_transformers(
    hf: dict[str, Tensor],
    codec_vocab_size: int,
    ids: TalkerIds,
    text_eos: Tensor,
    text_pad: Tensor,
    speakers: list[Tensor],
) -> dict[str, Tensor]:
    """``Qwen2_5OmniTalkerForConditionalGeneration`` -> ``dual_track``.

    ``text_eos``/``text_pad`` are the Thinker's input embeddings of ``tts_text_end`` and
    ``tts_text_pad``; ``speakers`` the Thinker's embeddings of each speaker's
    ``bos_token`` (from ``spk_dict.pt``), in ``speech.speakers`` order.
    """
    out: dict[str, Tensor] = {
        "proj.weight": hf["thinker_to_talker_proj.weight"],
        "proj.bias": hf["thinker_to_talker_proj.bias"],
        "codec_embed.weight": _codec_rows(hf["model.embed_tokens.weight"], codec_vocab_size, ids),
        "head.weight": _codec_rows(hf["codec_head.weight"], codec_vocab_size, ids),
        "norm.weight": hf["model.norm.weight"],
        "text_embed.weight": torch.stack([text_eos, text_pad]),
        "speaker_embed.weight": torch.stack(speakers),
    }
    for key, value in hf.items():
        if key.startswith("model.layers."):
            out[key[len("model."):]] = value
    return {k: v.clone() for k, v in out.items()}


def dit_from_transformers(hf: dict[str, Tensor], speakers: list[Tensor]) -> dict[str, Tensor]:
    """``Qwen2_5OmniToken2WavDiTModel`` -> ``flow_dit``. ``speakers``: each speaker's
    ``cond`` vector from ``spk_dict.pt`` (192 values in the 7B), in ``speech.speakers``
    order."""
    renames = {
        "time_embed.time_mlp.": "time_mlp.",
        "text_embed.codec_embed.": "code_embed.",
        "input_embed.proj.": "in_proj.",
        "input_embed.spk_encoder.": "ref_encoder.",
        "norm_out.linear.": "final_modulation.",
        "proj_out.": "out.",
    }
    block = {
        "attn_norm.linear.": "modulation.",
        "attn.to_q.": "attn.q_proj.",
        "attn.to_k.": "attn.k_proj.",
        "attn.to_v.": "attn.v_proj.",
        "attn.to_out.0.": "attn.o_proj.",
        "ff.ff.": "ff.",
    }
    out: dict[str, Tensor] = {"speaker_embed.weight": torch.stack(speakers)}
    for key, value in hf.items():
        new = None
        for old, rep in renames.items():
            if key.startswith(old):
                new = rep + key[len(old):]
        if key.startswith("transformer_blocks."):
            _, layer, rest = key.split(".", 2)
            for old, rep in block.items():
                if rest.startswith(old):
                    new = f"blocks.{layer}.{rep}{rest[len(old):]}"
        if new is None:
            raise KeyError(f"no flow_dit parameter for transformers key '{key}'")
        out[new] = value.clone()
    return out
