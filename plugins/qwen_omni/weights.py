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
    out: dict[str, Tensor] = {"speaker_embed.weight": torch.stack(speakers)}
    for key, value in hf.items():
        new = dit_key(key)
        if new is None:
            raise KeyError(f"no flow_dit parameter for transformers key '{key}'")
        out[new] = value.clone()
    return out


# ---- key by key: the streaming import/export (omnitrain_plugins.qwen_omni.hf_format) ----
# Each pair maps one transformers key (prefix removed) to one omnitrain key and back; a
# mapping returns None for a key it does not own.

_DIT_TOP = {
    "time_embed.time_mlp.": "time_mlp.",
    "text_embed.codec_embed.": "code_embed.",
    "input_embed.proj.": "in_proj.",
    "input_embed.spk_encoder.": "ref_encoder.",
    "norm_out.linear.": "final_modulation.",
    "proj_out.": "out.",
}
_DIT_BLOCK = {
    "attn_norm.linear.": "modulation.",
    "attn.to_q.": "attn.q_proj.",
    "attn.to_k.": "attn.k_proj.",
    "attn.to_v.": "attn.v_proj.",
    "attn.to_out.0.": "attn.o_proj.",
    "ff.ff.": "ff.",
}


def _swap_prefix(key: str, table: dict[str, str]) -> str | None:
    for old, new in table.items():
        if key.startswith(old):
            return new + key[len(old):]
    return None


def dit_key(hf_key: str) -> str | None:
    """``Qwen2_5OmniToken2WavDiTModel`` key -> ``flow_dit`` key."""
    if hf_key.startswith("transformer_blocks."):
        _, layer, rest = hf_key.split(".", 2)
        new = _swap_prefix(rest, _DIT_BLOCK)
        return None if new is None else f"blocks.{layer}.{new}"
    return _swap_prefix(hf_key, _DIT_TOP)


def dit_hf_key(key: str) -> str | None:
    """``flow_dit`` key -> transformers key (the inverse of ``dit_key``)."""
    if key.startswith("blocks."):
        _, layer, rest = key.split(".", 2)
        new = _swap_prefix(rest, {v: k for k, v in _DIT_BLOCK.items()})
        return None if new is None else f"transformer_blocks.{layer}.{new}"
    return _swap_prefix(key, {v: k for k, v in _DIT_TOP.items()})


def bigvgan_key(hf_key: str) -> str:
    """``Qwen2_5OmniToken2WavBigVGANModel`` key -> ``bigvgan`` key: transformers wraps each
    upsampling conv in a one-element ModuleList (``ups.i.0``); everything else is named alike."""
    if hf_key.startswith("ups."):
        _, i, zero, rest = hf_key.split(".", 3)
        if zero != "0":
            raise KeyError(f"unexpected BigVGAN key '{hf_key}'")
        return f"ups.{i}.{rest}"
    return hf_key


def bigvgan_hf_key(key: str) -> str:
    if key.startswith("ups."):
        _, i, rest = key.split(".", 2)
        return f"ups.{i}.0.{rest}"
    return key


def bigvgan_from_transformers(hf: dict[str, Tensor]) -> dict[str, Tensor]:
    """``Qwen2_5OmniToken2WavBigVGANModel`` -> ``bigvgan`` (set ``vocoder.input=qwen_log_mel``
    and ``vocoder.output=clamp`` to run as transformers does)."""
    return {bigvgan_key(k): v.clone() for k, v in hf.items()}


_AUDIO_ATTN = ("q_proj", "k_proj", "v_proj", "out_proj")
_VISION_ATTN = ("q", "k", "v", "proj")
_VISION_MLP = ("gate_proj", "up_proj", "down_proj")


def audio_key(hf_key: str) -> str | None:
    """``Qwen2_5OmniAudioEncoder`` key -> ``whisper_audio`` key; None for the tensors no
    forward reads (``audio_bos_eos_token``, the sinusoid table)."""
    if hf_key.startswith("audio_bos_eos_token") or "positional_embedding" in hf_key:
        return None
    return hf_key.replace("self_attn.", "")


def audio_hf_key(key: str) -> str:
    parts = key.split(".")
    if parts[0] == "layers" and parts[2] in _AUDIO_ATTN:
        return ".".join(parts[:2] + ["self_attn"] + parts[2:])
    return key


def vision_key(hf_key: str) -> str | None:
    """``Qwen2_5OmniVisionEncoder`` key -> ``qwen_vit`` key (the Conv3d patch embedding is
    stored flat: reshape with ``vision_patch_shape``)."""
    if "rotary_pos_emb" in hf_key:
        return None
    if hf_key == "patch_embed.proj.weight":
        return "patch_embed.weight"
    return (hf_key.replace(".attn.", ".").replace(".mlp.gate_proj", ".gate_proj")
            .replace(".mlp.up_proj", ".up_proj").replace(".mlp.down_proj", ".down_proj"))


def vision_hf_key(key: str) -> str:
    if key == "patch_embed.weight":
        return "patch_embed.proj.weight"
    parts = key.split(".")
    if parts[0] == "blocks" and parts[2] in _VISION_ATTN:
        return ".".join(parts[:2] + ["attn"] + parts[2:])
    if parts[0] == "blocks" and parts[2] in _VISION_MLP:
        return ".".join(parts[:2] + ["mlp"] + parts[2:])
    return key
