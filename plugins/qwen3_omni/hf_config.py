"""The omnitrain config (Hydra overrides) of a Qwen3-Omni ``config.json``: the Thinker side's
plugins and sizes, and, where the folder has the Talker, the speech side's (``talker=qwen3_moe``
with its code predictor, ``codec=qwen3_omni_codes``, ``dit=none``, ``vocoder=code2wav``, the
voices of ``talker_config.speaker_id``)."""

from __future__ import annotations

import json
import math
from typing import Any

from omnitrain.hf.formats import HFError


def _list(values: Any) -> str:
    return json.dumps(list(values)).replace(" ", "")


def _rope(text: dict[str, Any]) -> tuple[float, list[int] | None]:
    """(theta, mrope_section) as transformers 5 (rope_parameters) or the release (rope_scaling) write it."""
    rp, scaling = text.get("rope_parameters") or {}, text.get("rope_scaling") or {}
    return float(rp.get("rope_theta", text.get("rope_theta", 1e6))), rp.get("mrope_section") or scaling.get(
        "mrope_section")


def release_section(head_dim: int, section: list[int] | None) -> list[int]:
    """The mrope_section omnitrain's interleaved rotary needs to rotate as transformers does:
    the config's, or, where it gives none, transformers' default [24, 20, 20] (channel j
    takes H where j % 3 == 1 and W where j % 3 == 2, below 60; T elsewhere) cut to head_dim."""
    if section is not None:
        return list(section)
    half = head_dim // 2
    h = sum(1 for j in range(min(half, 60)) if j % 3 == 1)
    w = sum(1 for j in range(min(half, 60)) if j % 3 == 2)
    return [half - h - w, h, w]


def thinker_config(config: dict[str, Any]) -> dict[str, Any]:
    return config.get("thinker_config", config) if config.get("model_type") == "qwen3_omni_moe" else config


def thinker_overrides(config: dict[str, Any], tied: bool) -> list[str]:
    tc = thinker_config(config)
    text, audio, vision = tc.get("text_config") or {}, tc.get("audio_config") or {}, tc.get("vision_config") or {}
    hidden = int(text.get("hidden_size", 2048))
    for name, got in (("audio output_dim", audio.get("output_dim", hidden)),
                      ("vision out_hidden_size", vision.get("out_hidden_size", hidden))):
        if int(got) != hidden:
            raise HFError(f"config.json: the {name} is {got}, not the Thinker's width {hidden}")
    theta, section = _rope(text)
    n_window = audio.get("n_window", 50)
    o = [
        "thinker=qwen3_moe", f"thinker.hidden_size={hidden}", f"thinker.layers={text.get('num_hidden_layers', 48)}",
        f"thinker.heads={text.get('num_attention_heads', 32)}", f"thinker.kv_heads={text.get('num_key_value_heads', 4)}",
        f"thinker.head_dim={_head_dim(text, 2048, 32)}",
        f"thinker.ffn_dim={text.get('intermediate_size', 768)}",
        f"thinker.moe_ffn_dim={text.get('moe_intermediate_size', 768)}",
        f"thinker.experts={text.get('num_experts', 128)}", f"thinker.top_k={text.get('num_experts_per_tok', 8)}",
        f"thinker.norm_topk_prob={str(bool(text.get('norm_topk_prob', True))).lower()}",
        f"thinker.decoder_sparse_step={text.get('decoder_sparse_step', 1)}",
        f"thinker.mlp_only_layers={_list(text.get('mlp_only_layers') or [])}",
        f"thinker.router_aux_coef={text.get('router_aux_loss_coef', 0.001)}",
        f"thinker.rms_eps={text.get('rms_norm_eps', 1e-6)}", f"thinker.tie_embeddings={str(tied).lower()}",
        # transformers' Qwen3-Omni Thinker always interleaves the T/H/W frequencies
        "position=qwen3_tmrope", f"position.theta={theta}", "position.mrope_interleaved=true",
        f"position.position_id_per_seconds={tc.get('position_id_per_seconds', 25)}",
        f"position.audio_n_window={n_window}",
        "audio_encoder=qwen3_aut", f"audio_encoder.n_mels={audio.get('num_mel_bins', 128)}",
        f"audio_encoder.d_model={audio.get('d_model', 1280)}", f"audio_encoder.layers={audio.get('encoder_layers', 32)}",
        f"audio_encoder.heads={audio.get('encoder_attention_heads', 20)}",
        f"audio_encoder.ffn_dim={audio.get('encoder_ffn_dim', 5120)}",
        f"audio_encoder.downsample_hidden_size={audio.get('downsample_hidden_size', 480)}",
        f"audio_encoder.n_window={n_window}", f"audio_encoder.n_window_infer={audio.get('n_window_infer', 800)}",
        f"audio_encoder.max_source_positions={audio.get('max_source_positions', 1500)}",
        "vision_encoder=qwen3_vit", f"vision_encoder.hidden_size={vision.get('hidden_size', 1152)}",
        f"vision_encoder.depth={vision.get('depth', 27)}", f"vision_encoder.heads={vision.get('num_heads', 16)}",
        f"vision_encoder.intermediate_size={vision.get('intermediate_size', 4304)}",
        f"vision_encoder.num_position_embeddings={vision.get('num_position_embeddings', 2304)}",
        f"vision_encoder.deepstack_visual_indexes={_list(vision.get('deepstack_visual_indexes', [8, 16, 24]))}",
        f"vision_encoder.patch_size={vision.get('patch_size', 16)}",
        f"vision_encoder.temporal_patch_size={vision.get('temporal_patch_size', 2)}",
        f"vision_encoder.merge_size={vision.get('spatial_merge_size', 2)}",
        f"position.mrope_section={_list(release_section(_head_dim(text, 2048, 32), section))}",
    ]
    return o


def _head_dim(text: dict[str, Any], hidden: int, heads: int) -> int:
    return int(text.get("head_dim") or int(text.get("hidden_size", hidden)) // int(text.get("num_attention_heads", heads)))


def speaker_names(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The release's voices, (name, codec row), in config.json's order."""
    return [(str(n), int(i)) for n, i in ((config.get("talker_config") or {}).get("speaker_id") or {}).items()]


def speech_overrides(config: dict[str, Any]) -> list[str]:
    """The speech side at the checkpoint's sizes (the folder holds the Talker and Code2Wav)."""
    talker = config.get("talker_config") or {}
    text, pred = talker.get("text_config") or {}, talker.get("code_predictor_config") or {}
    c2w = config.get("code2wav_config") or {}
    groups, codebook = int(talker.get("num_code_groups", 32)), int(c2w.get("codebook_size", 2048))
    if int(c2w.get("num_quantizers", groups)) != groups or int(pred.get("vocab_size", codebook)) != codebook:
        raise HFError("config.json: the Talker's num_code_groups / the code predictor's vocab_size differ from "
                      "Code2Wav's num_quantizers / codebook_size; omnitrain's codec slot holds one code space")
    heads, kv = int(c2w.get("num_attention_heads", 16)), int(c2w.get("num_key_value_heads", 16))
    if heads != kv:
        raise HFError(f"config.json: Code2Wav's num_key_value_heads {kv} differs from its {heads} heads; "
                      "vocoder=code2wav has no grouped KV heads")
    ratios, rates = list(c2w.get("upsampling_ratios", [2, 2])), list(c2w.get("upsample_rates", [8, 5, 4, 3]))
    hop, sample_rate = math.prod(ratios) * math.prod(rates), 24000
    t_theta, t_section = _rope(text)
    p_theta, _ = _rope(pred)
    c_theta, _ = _rope(c2w)
    hidden = int(text.get("hidden_size", 1024))
    speakers = speaker_names(config)
    ids = ("codec_pad_id", "codec_bos_id", "codec_eos_token_id", "codec_nothink_id", "codec_think_bos_id",
           "codec_think_eos_id")
    ours = ("codec_pad_id", "codec_bos_id", "codec_eos_id", "codec_nothink_id", "codec_think_bos_id",
            "codec_think_eos_id")
    o = [
        "talker=qwen3_moe", f"talker.hidden_size={hidden}", f"talker.layers={text.get('num_hidden_layers', 20)}",
        f"talker.heads={text.get('num_attention_heads', 16)}", f"talker.kv_heads={text.get('num_key_value_heads', 2)}",
        f"talker.head_dim={_head_dim(text, 1024, 16)}",
        f"talker.projection_dim={text.get('intermediate_size', 2048)}",
        f"talker.moe_ffn_dim={text.get('moe_intermediate_size', 384)}",
        f"talker.shared_expert_ffn_dim={text.get('shared_expert_intermediate_size', 768)}",
        f"talker.experts={text.get('num_experts', text.get('num_local_experts', 128))}", f"talker.top_k={text.get('num_experts_per_tok', 8)}",
        f"talker.norm_topk_prob={str(bool(text.get('norm_topk_prob', False))).lower()}",
        f"talker.rms_eps={text.get('rms_norm_eps', 1e-6)}", f"talker.rope_theta={t_theta}",
        f"talker.router_aux_coef={text.get('router_aux_loss_coef', 0.001)}",
        f"talker.accept_hidden_layer={talker.get('accept_hidden_layer', 18)}",
        f"talker.vocab_size={text.get('vocab_size', 3072)}",
        *(f"talker.{mine}={int(talker[theirs])}" for theirs, mine in zip(ids, ours, strict=True) if theirs in talker),
        "talker.speaker_ids=[" + ",".join(f"'{n}:{i}'" for n, i in speakers) + "]",
        f"talker.predictor_layers={pred.get('num_hidden_layers', 5)}",
        f"talker.predictor_heads={pred.get('num_attention_heads', 16)}",
        f"talker.predictor_kv_heads={pred.get('num_key_value_heads', 8)}",
        f"talker.predictor_head_dim={pred.get('head_dim', 128)}",
        f"talker.predictor_ffn_dim={pred.get('intermediate_size', 3072)}", f"talker.predictor_rope_theta={p_theta}",
        "codec=qwen3_omni_codes", f"codec.vocab_size={codebook}", f"codec.groups={groups}",
        f"codec.sample_rate={sample_rate}", f"codec.hop_length={hop}",
        "dit=none", "dit.mel_frames_per_code=1", "loss.flow=0.0",
        "vocoder=code2wav", f"vocoder.hidden_size={c2w.get('hidden_size', 1024)}",
        f"vocoder.layers={c2w.get('num_hidden_layers', 8)}", f"vocoder.heads={heads}",
        f"vocoder.intermediate_size={c2w.get('intermediate_size', 3072)}",
        f"vocoder.sliding_window={c2w.get('sliding_window', 72)}", f"vocoder.rope_theta={c_theta}",
        f"vocoder.rms_eps={c2w.get('rms_norm_eps', 1e-5)}",
        f"vocoder.layer_scale={c2w.get('layer_scale_initial_scale', 0.01)}",
        f"vocoder.upsampling_ratios={_list(ratios)}", f"vocoder.upsample_rates={_list(rates)}",
        f"vocoder.decoder_dim={c2w.get('decoder_dim', 1536)}",
        f"speech.sample_rate={sample_rate}", f"speech.hop_length={hop}",
        f"talker.mrope_section={_list(release_section(_head_dim(text, 1024, 16), t_section))}",
    ]
    if speakers:
        o.append("speech.speakers=[" + ",".join(f"'{n}'" for n, _ in speakers) + "]")
    return o
