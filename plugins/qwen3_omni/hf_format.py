"""Qwen3-Omni's Hugging Face folder <-> omnitrain, tensor by tensor (names: ``hf_names.py``,
config: ``hf_config.py``).

The whole model maps: the Thinker side to ``qwen3_moe``, ``qwen3_aut``, ``qwen3_vit``; the
Talker with its code predictor to ``talker=qwen3_moe``; Code2Wav to ``vocoder=code2wav``.
Besides its own tensors the Talker reads three rows of the Thinker's embedding table (the
``tts_bos``/``tts_eos``/``tts_pad`` tokens): they import into ``talker.tts_embed`` and
export back into the table, as ``dual_track`` keeps Qwen2.5-Omni's text rows. Export writes
every tensor under the name, layout (per expert or fused) and dtype the import read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from omnitrain.checkpoints.base import TensorSpec
from omnitrain.hf.formats import HFError, HFFormat, ImportPlan, Piece, register_format
from omnitrain.registry import registry
from omnitrain_plugins.qwen3_omni.hf_config import (
    speech_overrides,
    thinker_config,
    thinker_overrides,
)
from omnitrain_plugins.qwen3_omni.hf_names import is_speech, own_name
from omnitrain_plugins.qwen_omni.hf_format import PROCESSOR_FILES as QWEN25_PROCESSOR_FILES
from omnitrain_plugins.qwen_omni.hf_format import TOKENIZER_FILES

# Qwen2.5-Omni's folder files, less its voices file, plus the video processor's config
PROCESSOR_FILES = (*(f for f in QWEN25_PROCESSOR_FILES if f != "spk_dict.pt"), "video_preprocessor_config.json")
EMBED = ("thinker.model.embed_tokens.weight", "thinker.model.language_model.embed_tokens.weight")


class Qwen3OmniFormat(HFFormat):
    model_types = ("qwen3_omni_moe", "qwen3_omni_moe_thinker")

    def __init__(self) -> None:
        self.speech = False  # the folder has the Talker and Code2Wav, and the model holds them
        self.tts_ids: list[int] = []  # the Thinker's tts_bos, tts_eos, tts_pad ids
        self._cache: dict[str, Tensor] = {}  # export: the last 3-D expert tensors read (per-expert keys slice them)

    def _read(self, config: dict[str, Any], keys) -> None:
        self.speech = any(k.startswith("talker.") for k in keys)
        self.tts_ids = [int(config.get(k, d)) for k, d in (("tts_bos_token_id", 151672), ("tts_eos_token_id", 151673),
                                                           ("tts_pad_token_id", 151671))]

    # ---- config ------------------------------------------------------------------
    def plan(self, folder: Path, config: dict[str, Any], keys: dict[str, TensorSpec]) -> ImportPlan:
        self._read(config, keys)
        o = thinker_overrides(config, tied=not any(k.endswith("lm_head.weight") for k in keys))
        notes = []
        if self.speech:
            o += speech_overrides(config)
        else:
            notes.append("no Talker in the folder: the run's speech slots start at random")
        tok_files = [f for f in TOKENIZER_FILES if (folder / f).is_file()]
        o += self._tokenizer(thinker_config(config).get("text_config") or {}, tok_files, notes)
        return ImportPlan(o, [f for f in PROCESSOR_FILES if (folder / f).is_file()], tok_files, notes)

    def _tokenizer(self, text: dict[str, Any], files: list[str], notes: list[str]) -> list[str]:
        vocab = int(text.get("vocab_size", 152064))
        if "qwen3_omni" in registry("tokenizer") and "tokenizer.json" in files:
            return ["tokenizer=qwen3_omni", "tokenizer.path={bundle}/tokenizer", f"tokenizer.vocab_size={vocab}"]
        notes.append(f"no tokenizer.json in the folder: tokenizer=byte padded to the {vocab}-id vocabulary (the "
                     "weights import; text in and out needs Qwen3-Omni's tokenizer)")
        return ["tokenizer=byte", f"tokenizer.vocab_size={vocab}"]

    # ---- import --------------------------------------------------------------------
    def import_tensor(self, key: str, tensor: Tensor) -> list[Piece]:
        found = own_name(key, self.speech)
        if found is None:
            return []
        name, expert, part = found
        if expert >= 0:
            n = tensor.numel()  # one expert's (I, D) or (D, I) matrix
            return [(name, expert * n if part == "down" else expert * 2 * n + (n if part == "up" else 0), tensor)]
        pieces: list[Piece] = [(name, 0, tensor)]
        if key in EMBED and self.speech:  # the rows the Talker reads of the Thinker's table
            width = tensor.shape[1]
            pieces += [("talker.tts_embed.weight", i * width, tensor[t]) for i, t in enumerate(self.tts_ids)]
        return pieces

    # ---- export --------------------------------------------------------------------
    def unsupported(self, cfg: Any) -> list[str]:
        want = {"thinker": "qwen3_moe", "audio_encoder": "qwen3_aut", "vision_encoder": "qwen3_vit",
                "position": "qwen3_tmrope"}
        if self.speech:
            want |= {"talker": "qwen3_moe", "vocoder": "code2wav"}
        return [f"{slot}={cfg.slot(slot).name} (Qwen3-Omni's is {name})"
                for slot, name in want.items() if cfg.slot(slot).name != name]

    def export_specs(self, cfg: Any, source: Path | None, own: dict[str, TensorSpec],
                     kept: dict[str, TensorSpec]) -> tuple[dict[str, TensorSpec], dict[str, Any]]:
        if source is None:
            raise HFError("export --format hf takes config.json from the import the model started from; start "
                          "training from an `omnitrain import-hf` bundle (init_from=BUNDLE)")
        config = json.loads((source / "config.json").read_text())
        info = json.loads((source / "source.json").read_text())
        specs = {k: TensorSpec(tuple(shape), getattr(torch, dtype)) for k, (dtype, shape) in info["tensors"].items()}
        self._read(config, specs)
        self.speech = self.speech and "talker.tts_embed.weight" in own  # a model built without Qwen3-Omni's Talker keeps them
        self._cache = {}
        if self.speech:  # the voices, a new one included: each its row of the Talker's codec table
            from omnitrain_plugins.qwen3_omni.talker import speaker_rows

            config["talker_config"]["speaker_id"] = speaker_rows(cfg.talker, list(cfg.speech.speakers),
                                                                 cfg.codec.vocab_size)
        for key, spec in specs.items():
            found = own_name(key, self.speech)
            if found is not None and found[1] < 0 and found[0] in own and own[found[0]].numel != spec.numel:
                raise HFError(f"'{found[0]}' has shape {own[found[0]].shape}, the imported '{key}' had {spec.shape}: "
                              "the model was changed after the import; transformers would not load it")
        return specs, config

    def keep(self, key: str) -> bool:
        return is_speech(key) and not self.speech

    def export_tensor(self, key: str, get: Callable[[str], Tensor], kept: Callable[[str], Tensor]) -> Tensor:
        if self.keep(key):
            return kept(key)
        found = own_name(key, self.speech)
        if found is None:
            raise HFError(f"no omnitrain tensor for transformers key '{key}'")
        name, expert, part = found
        if expert < 0:
            tensor = get(name)
            if key in EMBED and self.speech:  # the Talker trained its own copies of these rows
                tensor = tensor.clone()
                tensor[self.tts_ids] = get("talker.tts_embed.weight").to(tensor.dtype)
            return tensor
        if name not in self._cache:  # a layer's gate_up and down tensors alternate in key order: keep two
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[name] = get(name)
        weights = self._cache[name][expert]
        half = weights.shape[0] // 2
        return weights if part == "down" else weights[:half] if part == "gate" else weights[half:]


FORMAT = register_format(Qwen3OmniFormat())
