"""Qwen3-Omni's Hugging Face folder <-> omnitrain, tensor by tensor: the Thinker side.

``save_pretrained`` (and the release) name the Thinker's tensors::

    thinker.model.{embed_tokens,layers,norm}.*, thinker.lm_head -> thinker (qwen3_moe)
    thinker.audio_tower.*                                       -> audio_encoder (qwen3_aut)
    thinker.visual.*                                            -> vision_encoder (qwen3_vit)
    thinker.model.layers.N.mlp.experts.E.{gate,up,down}_proj.weight
        -> expert E's rows of layer N's 3-D ``gate_up_proj`` (gate, then up) and ``down_proj``

transformers' own module names (``save_pretrained(save_original_format=False)``) say
``thinker.model.language_model.*``, ``thinker.model.audio_tower.*``, ``thinker.model.visual.*``
and keep each layer's experts fused, as omnitrain does; a Thinker-only folder (model_type
``qwen3_omni_moe_thinker``) has no ``thinker.`` prefix. All are read. The Talker, its code
predictor and Code2Wav (``talker.*``, ``code2wav.*``) have no omnitrain slot yet: they are
kept as they are. Export writes every tensor back under the name, layout and dtype the
import read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from omnitrain.checkpoints.base import TensorSpec
from omnitrain.hf.formats import HFError, HFFormat, ImportPlan, Piece, register_format
from omnitrain.registry import registry

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.json", "chat_template.jinja")
PROCESSOR_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
                   "video_preprocessor_config.json", "chat_template.json", "chat_template.jinja")
KEPT_PREFIXES = ("talker.", "code2wav.")  # the speech side: not mapped yet, written back untouched
# (checkpoint prefix after an optional "thinker.", omnitrain prefix), first match wins
PREFIXES = (("lm_head.", "thinker.lm_head."), ("model.language_model.", "thinker."),
            ("model.audio_tower.", "audio_encoder."), ("audio_tower.", "audio_encoder."),
            ("model.visual.", "vision_encoder."), ("visual.", "vision_encoder."), ("model.", "thinker."))
EXPERT = re.compile(r"^(thinker\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight$")


def own_name(key: str) -> tuple[str, int, str] | None:
    """(omnitrain tensor, expert, part) holding checkpoint tensor ``key``: expert -1 and part
    "" for a whole tensor; None for a tensor kept aside."""
    if key.startswith(KEPT_PREFIXES):
        return None
    rest = key.removeprefix("thinker.")
    name = next((new + rest[len(old):] for old, new in PREFIXES if rest.startswith(old)), None)
    if name is None:
        return None
    match = EXPERT.match(name)
    if match is None:
        return name, -1, ""
    part = match.group(3)
    return f"{match.group(1)}.{'down_proj' if part == 'down' else 'gate_up_proj'}", int(match.group(2)), part


def _list(values: Any) -> str:
    return json.dumps(list(values)).replace(" ", "")


def _rope(text: dict[str, Any]) -> tuple[float, list[int] | None]:
    """(theta, mrope_section) as transformers 5 (rope_parameters) or the release (rope_scaling) write it."""
    rp, scaling = text.get("rope_parameters") or {}, text.get("rope_scaling") or {}
    return float(rp.get("rope_theta", text.get("rope_theta", 1e6))), rp.get("mrope_section") or scaling.get(
        "mrope_section")


class Qwen3OmniFormat(HFFormat):
    model_types = ("qwen3_omni_moe", "qwen3_omni_moe_thinker")

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[int, ...]] = {}
        self._cache: dict[str, Tensor] = {}  # export: the last 3-D expert tensors read (per-expert keys slice them)

    # ---- config ------------------------------------------------------------------
    def plan(self, folder: Path, config: dict[str, Any], keys: dict[str, TensorSpec]) -> ImportPlan:
        tc = config.get("thinker_config", config) if config.get("model_type") == "qwen3_omni_moe" else config
        text, audio, vision = tc.get("text_config") or {}, tc.get("audio_config") or {}, tc.get("vision_config") or {}
        hidden = int(text.get("hidden_size", 2048))
        for name, got in (("audio output_dim", audio.get("output_dim", hidden)),
                          ("vision out_hidden_size", vision.get("out_hidden_size", hidden))):
            if int(got) != hidden:
                raise HFError(f"config.json: the {name} is {got}, not the Thinker's width {hidden}")
        tied = not any(k.endswith("lm_head.weight") for k in keys)
        theta, section = _rope(text)
        n_window = audio.get("n_window", 50)
        o = [
            "thinker=qwen3_moe", f"thinker.hidden_size={hidden}", f"thinker.layers={text.get('num_hidden_layers', 48)}",
            f"thinker.heads={text.get('num_attention_heads', 32)}", f"thinker.kv_heads={text.get('num_key_value_heads', 4)}",
            f"thinker.head_dim={text.get('head_dim') or hidden // int(text.get('num_attention_heads', 32))}",
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
        ]
        if section is not None:
            o.append(f"position.mrope_section={_list(section)}")
        notes = []
        speech = sum(k.startswith(KEPT_PREFIXES) for k in keys)
        if speech:
            notes.append(f"the Talker, code predictor and Code2Wav ({speech} tensors) are kept as they are and "
                         "written back by export --format hf; omnitrain's speech slots start at random (train "
                         "the Thinker with loss.codec=0 loss.flow=0)")
        tok_files = [f for f in TOKENIZER_FILES if (folder / f).is_file()]
        o += self._tokenizer(text, tok_files, notes)
        return ImportPlan(o, [f for f in PROCESSOR_FILES if (folder / f).is_file()], tok_files, notes)

    def _tokenizer(self, text: dict[str, Any], files: list[str], notes: list[str]) -> list[str]:
        vocab = int(text.get("vocab_size", 152064))
        if "qwen3_omni" in registry("tokenizer") and "tokenizer.json" in files:
            return ["tokenizer=qwen3_omni", "tokenizer.path={bundle}/tokenizer", f"tokenizer.vocab_size={vocab}"]
        notes.append(f"no tokenizer.json in the folder: tokenizer=byte padded to the {vocab}-id vocabulary (the "
                     "weights import; text in and out needs Qwen3-Omni's tokenizer)")
        return ["tokenizer=byte", f"tokenizer.vocab_size={vocab}"]

    # ---- import --------------------------------------------------------------------
    def keep(self, key: str) -> bool:
        return key.startswith(KEPT_PREFIXES)

    def import_tensor(self, key: str, tensor: Tensor) -> list[Piece]:
        found = own_name(key)
        if found is None:
            return []
        name, expert, part = found
        if expert < 0:
            return [(name, 0, tensor)]
        n = tensor.numel()  # one expert's (I, D) or (D, I) matrix
        offset = expert * n if part == "down" else expert * 2 * n + (n if part == "up" else 0)
        return [(name, offset, tensor)]

    # ---- export --------------------------------------------------------------------
    def unsupported(self, cfg: Any) -> list[str]:
        want = {"thinker": "qwen3_moe", "audio_encoder": "qwen3_aut", "vision_encoder": "qwen3_vit",
                "position": "qwen3_tmrope"}
        return [f"{slot}={cfg.slot(slot).name} (Qwen3-Omni's is {name})"
                for slot, name in want.items() if cfg.slot(slot).name != name]

    def export_specs(self, cfg: Any, source: Path | None, own: dict[str, TensorSpec],
                     kept: dict[str, TensorSpec]) -> tuple[dict[str, TensorSpec], dict[str, Any]]:
        if source is None:
            raise HFError("export --format hf takes config.json and the Talker's tensors from the import the "
                          "model started from; start training from an `omnitrain import-hf` bundle (init_from=BUNDLE)")
        config = json.loads((source / "config.json").read_text())
        info = json.loads((source / "source.json").read_text())
        specs = {k: TensorSpec(tuple(shape), getattr(torch, dtype)) for k, (dtype, shape) in info["tensors"].items()}
        self.shapes, self._cache = {k: s.shape for k, s in specs.items()}, {}
        for key, spec in specs.items():
            found = own_name(key)
            if found is not None and found[1] < 0 and found[0] in own and own[found[0]].numel != spec.numel:
                raise HFError(f"'{found[0]}' has shape {own[found[0]].shape}, the imported '{key}' had {spec.shape}: "
                              "the model was changed after the import; transformers would not load it")
        return specs, config

    def export_tensor(self, key: str, get: Callable[[str], Tensor], kept: Callable[[str], Tensor]) -> Tensor:
        if self.keep(key):
            return kept(key)
        found = own_name(key)
        if found is None:
            raise HFError(f"no omnitrain tensor for transformers key '{key}'")
        name, expert, part = found
        if expert < 0:
            return get(name)
        if name not in self._cache:  # a layer's gate_up and down tensors alternate in key order: keep two
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[name] = get(name)
        weights = self._cache[name][expert]
        half = weights.shape[0] // 2
        return weights if part == "down" else weights[:half] if part == "gate" else weights[half:]


FORMAT = register_format(Qwen3OmniFormat())
