"""Qwen2.5-Omni's Hugging Face folder <-> omnitrain, tensor by tensor.

``transformers``' ``Qwen2_5OmniForConditionalGeneration`` stores::

    thinker.model.*, thinker.lm_head      -> thinker (qwen2)
    thinker.audio_tower.*                 -> audio_encoder (whisper_audio)
    thinker.visual.*                      -> vision_encoder (qwen_vit)
    talker.*                              -> talker (dual_track)
    token2wav.code2wav_dit_model.*        -> dit (flow_dit)
    token2wav.code2wav_bigvgan_model.*    -> vocoder (bigvgan, reading Qwen's log-mel)
    spk_dict.pt {voice: cond, ref_mel, bos_token}

``dual_track`` keeps by role what transformers' talker keeps by id: its codec table holds
the codes and the four specials (the rest of the 8448 rows are kept aside for export),
its text rows (``tts_text_end``/``tts_text_pad``) and speaker rows (each voice's
``bos_token``) are the Thinker's embeddings of those ids, and the DiT's speaker table is
the voices' ``cond`` vectors. Export writes them back where transformers reads them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from omnitrain.checkpoints.base import TensorSpec
from omnitrain.checkpoints.safe_load import load_file
from omnitrain.hf.formats import HFError, HFFormat, ImportPlan, Piece, register_format
from omnitrain.registry import registry
from omnitrain_plugins.qwen_omni.weights import (
    audio_key,
    bigvgan_key,
    dit_key,
    vision_key,
)

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "added_tokens.json", "chat_template.json", "chat_template.jinja")
PROCESSOR_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
                   "chat_template.json", "chat_template.jinja", "spk_dict.pt")
# Qwen2.5-Omni's token2wav mel (the BigVGAN recipe it was trained with): 24 kHz, 1024-point
# STFT over (n_fft - hop) / 2 reflected samples each side, slaney mel from 0 Hz to Nyquist,
# natural log of magnitudes floored at 1e-5.
# config.json gives the rest: n_mels (mel_dim) and the hop (product of upsample_rates).
SAMPLE_RATE, N_FFT, LOG_FLOOR = 24000, 1024, 1e-5

THINKER, AUDIO, VISION = "thinker.", "thinker.audio_tower.", "thinker.visual."
TALKER, DIT, VOCODER = "talker.", "token2wav.code2wav_dit_model.", "token2wav.code2wav_bigvgan_model."


def _rope(text: dict[str, Any]) -> tuple[float, list[int] | None]:
    """(theta, mrope_section) from a text config, as transformers 5 or 4.5x write it."""
    rp = text.get("rope_parameters") or {}
    scaling = text.get("rope_scaling") or {}
    theta = rp.get("rope_theta", text.get("rope_theta", 1e6))
    return float(theta), rp.get("mrope_section") or scaling.get("mrope_section")


def _list(values: Any) -> str:
    return json.dumps(list(values)).replace(" ", "")


class QwenOmniFormat(HFFormat):
    model_types = ("qwen2_5_omni",)

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.speakers: list[str] = []
        self.bos: list[int] = []
        self.codec_vocab = 0
        self.has_talker = False
        self.shapes: dict[str, tuple[int, ...]] = {}

    # ---- config ------------------------------------------------------------------
    def _read_ids(self, config: dict[str, Any], folder: Path | None) -> None:
        talker = config.get("talker_config") or {}
        dit = (config.get("token2wav_config") or {}).get("dit_config") or {}
        self.codec_vocab = int(dit.get("num_embeds", 8193))  # the DiT table has one more row (its pad)
        self.ids = {k: int(talker.get(f"tts_{k}_token_id", d)) for k, d in (
            ("codec_pad", 8292), ("codec_start", 8293), ("codec_end", 8294), ("codec_mask", 8296),
            ("text_end", 151861), ("text_pad", 151859))}
        self.speakers, self.bos = [], []
        spk = folder / "spk_dict.pt" if folder is not None else None
        if spk is not None and spk.is_file():
            voices = load_file(spk, mmap=False)
            self.speakers = [str(n) for n in voices]
            self.bos = [int(v["bos_token"]) for v in voices.values()]

    def plan(self, folder: Path, config: dict[str, Any], keys: dict[str, TensorSpec]) -> ImportPlan:
        self._read_ids(config, folder)
        tc = config.get("thinker_config") or {}
        text, audio, vision = tc.get("text_config") or {}, tc.get("audio_config") or {}, tc.get("vision_config") or {}
        talker = config.get("talker_config") or {}
        t2w = config.get("token2wav_config") or {}
        dit, voc = t2w.get("dit_config") or {}, t2w.get("bigvgan_config") or {}
        self.has_talker = any(k.startswith(TALKER) for k in keys)
        notes: list[str] = []
        hidden = int(text.get("hidden_size", 3584))
        # tied when the checkpoint has no separate head (config defaults differ across versions)
        tied = "thinker.lm_head.weight" not in keys if any(k.startswith(THINKER) for k in keys) else bool(
            text.get("tie_word_embeddings", False))
        theta, section = _rope(text)
        if talker and _rope(talker) != (theta, section):
            raise HFError(f"the Talker's rope {_rope(talker)} differs from the Thinker's {(theta, section)}; "
                          "omnitrain's Thinker and Talker share one positional scheme")
        o = [
            "thinker=qwen2", f"thinker.hidden_size={hidden}", f"thinker.layers={text.get('num_hidden_layers', 28)}",
            f"thinker.heads={text.get('num_attention_heads', 28)}", f"thinker.kv_heads={text.get('num_key_value_heads', 4)}",
            f"thinker.ffn_dim={text.get('intermediate_size', 18944)}", f"thinker.rms_eps={text.get('rms_norm_eps', 1e-6)}",
            f"thinker.tie_embeddings={str(tied).lower()}",
            "position=tmrope", f"position.theta={theta}",
            f"position.position_id_per_seconds={tc.get('position_id_per_seconds', 25)}",
            f"position.seconds_per_chunk={tc.get('seconds_per_chunk', 2)}",
            "audio_encoder=whisper_audio", f"audio_encoder.d_model={audio.get('d_model', 1280)}",
            f"audio_encoder.layers={audio.get('encoder_layers', 32)}",
            f"audio_encoder.heads={audio.get('encoder_attention_heads', 20)}",
            f"audio_encoder.ffn_dim={audio.get('encoder_ffn_dim', 5120)}",
            f"audio_encoder.n_mels={audio.get('num_mel_bins', 128)}", f"audio_encoder.n_window={audio.get('n_window', 100)}",
            f"audio_encoder.max_source_positions={audio.get('max_source_positions', 1500)}",
            "vision_encoder=qwen_vit", f"vision_encoder.hidden_size={vision.get('hidden_size', 1280)}",
            f"vision_encoder.depth={vision.get('depth', 32)}", f"vision_encoder.heads={vision.get('num_heads', 16)}",
            f"vision_encoder.intermediate_size={vision.get('intermediate_size', 3420)}",
            f"vision_encoder.window_size={vision.get('window_size', 112)}",
            f"vision_encoder.fullatt_block_indexes={_list(vision.get('fullatt_block_indexes', [7, 15, 23, 31]))}",
            f"vision_encoder.patch_size={vision.get('patch_size', 14)}",
            f"vision_encoder.temporal_patch_size={vision.get('temporal_patch_size', 2)}",
            f"vision_encoder.merge_size={vision.get('spatial_merge_size', 2)}",
        ]
        if section is not None:
            o.append(f"position.mrope_section={_list(section)}")
        for name, got in (("audio output_dim", audio.get("output_dim", hidden)),
                          ("vision out_hidden_size", vision.get("out_hidden_size", hidden))):
            if int(got) != hidden:
                raise HFError(f"config.json: the {name} is {got}, not the Thinker's width {hidden}")
        # speech: Talker, codes, DiT, BigVGAN and the mel they share
        rates = list(voc.get("upsample_rates", [5, 3, 2, 2, 2, 2]))
        hop, repeats = math.prod(rates), int(dit.get("repeats", 2))
        o += [
            "talker=dual_track", f"talker.dim={talker.get('hidden_size', 896)}",
            f"talker.layers={talker.get('num_hidden_layers', 24)}", f"talker.heads={talker.get('num_attention_heads', 12)}",
            f"talker.kv_heads={talker.get('num_key_value_heads', 4)}", f"talker.head_dim={talker.get('head_dim', 128)}",
            f"talker.ffn_dim={talker.get('intermediate_size', 18944)}", f"talker.rms_eps={talker.get('rms_norm_eps', 1e-6)}",
            "codec=qwen_omni_codes", f"codec.vocab_size={self.codec_vocab}", f"codec.sample_rate={SAMPLE_RATE}",
            f"codec.hop_length={hop * repeats}",
            "dit=flow_dit", f"dit.dim={dit.get('hidden_size', 1024)}", f"dit.layers={dit.get('num_hidden_layers', 22)}",
            f"dit.heads={dit.get('num_attention_heads', 16)}", f"dit.head_dim={dit.get('head_dim', 64)}",
            f"dit.ff_mult={dit.get('ff_mult', 2)}", f"dit.code_dim={dit.get('emb_dim', 512)}",
            f"dit.mel_frames_per_code={repeats}", f"dit.block_size={dit.get('block_size', 24)}",
            f"dit.look_backward_layers={_list(dit.get('look_backward_layers', [0, 20]))}",
            f"dit.look_ahead_layers={_list(dit.get('look_ahead_layers', [10]))}",
            f"dit.speaker_dim={dit.get('enc_emb_dim', 192)}", f"dit.ref_dim={dit.get('enc_dim', 128)}",
            f"dit.ecapa_channels={_list(dit.get('enc_channels', [256, 256, 256, 256, 768]))}",
            f"dit.ecapa_kernel_sizes={_list(dit.get('enc_kernel_sizes', [5, 3, 3, 3, 1]))}",
            f"dit.ecapa_dilations={_list(dit.get('enc_dilations', [1, 2, 3, 4, 1]))}",
            f"dit.ecapa_attention_channels={dit.get('enc_attention_channels', 64)}",
            f"dit.ecapa_res2net_scale={dit.get('enc_res2net_scale', 2)}",
            f"dit.ecapa_se_channels={dit.get('enc_se_channels', 64)}", f"dit.dropout={dit.get('dropout', 0.1)}",
            f"dit.rope_theta={float((dit.get('rope_parameters') or {}).get('rope_theta', dit.get('rope_theta', 10000.0)))}",
            "vocoder=bigvgan", f"vocoder.channels={voc.get('upsample_initial_channel', 1536)}",
            f"vocoder.upsample_rates={_list(rates)}",
            f"vocoder.upsample_kernel_sizes={_list(voc.get('upsample_kernel_sizes', [11, 7, 4, 4, 4, 4]))}",
            f"vocoder.resblock_kernel_sizes={_list(voc.get('resblock_kernel_sizes', [3, 7, 11]))}",
            f"vocoder.resblock_dilations={_list(list(d) for d in voc.get('resblock_dilation_sizes', [[1, 3, 5]] * 3))}",
            "vocoder.input=qwen_log_mel", "vocoder.output=clamp",
            f"speech.sample_rate={SAMPLE_RATE}", f"speech.hop_length={hop}", f"speech.n_fft={N_FFT}",
            f"speech.n_mels={dit.get('mel_dim', voc.get('mel_dim', 80))}", "speech.f_min=0.0",
            f"speech.f_max={SAMPLE_RATE / 2}", f"speech.log_floor={LOG_FLOOR}", "speech.norm_mean=0.0",
            "speech.norm_std=1.0", "speech.padding=bigvgan",
        ]
        if self.speakers:
            o.append("speech.speakers=[" + ",".join(f"'{s}'" for s in self.speakers) + "]")
            refs = self.reference_mels(folder)
            if refs:  # transformers conditions the DiT on the whole ref_mel
                o.append(f"speech.max_reference_frames={max(300, *(int(r.shape[0]) for r in refs.values()))}")
        elif self.has_talker:
            notes.append("no spk_dict.pt: one voice 'default', its Talker and DiT speaker rows left at random")
        tok_files = [f for f in TOKENIZER_FILES if (folder / f).is_file()]
        o += self._tokenizer(folder, text, tok_files, notes)
        return ImportPlan(o, [f for f in PROCESSOR_FILES if (folder / f).is_file()], tok_files, notes)

    def _tokenizer(self, folder: Path, text: dict[str, Any], files: list[str], notes: list[str]) -> list[str]:
        vocab = int(text.get("vocab_size", 152064))
        if "qwen2" in registry("tokenizer") and "tokenizer.json" in files:
            out = ["tokenizer=qwen2", "tokenizer.path={bundle}/tokenizer"]
            fields = getattr(registry("tokenizer").get("qwen2").config_cls, "__dataclass_fields__", {})
            if "vocab_size" in fields:
                out.append(f"tokenizer.vocab_size={vocab}")
            return out
        why = "no tokenizer.json in the folder" if "tokenizer.json" not in files else "no qwen2 tokenizer plugin"
        notes.append(f"{why}: tokenizer=byte padded to the {vocab}-id vocabulary (the weights import; "
                     "text in and out needs the qwen2 tokenizer)")
        return ["tokenizer=byte", f"tokenizer.vocab_size={vocab}"]

    # ---- import --------------------------------------------------------------------
    def _codec_rows(self, weight: Tensor) -> Tensor:
        i = self.ids
        special = [i["codec_pad"], i["codec_start"], i["codec_end"], i["codec_mask"]]
        return torch.cat([weight[: self.codec_vocab], weight[special]])

    def own_name(self, key: str) -> str | None:
        """The omnitrain tensor that holds transformers tensor ``key`` whole (None: no one
        tensor does, e.g. the talker's codec tables, or nothing reads it)."""
        if key in ("talker.model.embed_tokens.weight", "talker.codec_head.weight"):
            return None
        if key == "thinker.lm_head.weight":
            return key
        if key.startswith(AUDIO):
            new = audio_key(key[len(AUDIO):])
            return None if new is None else f"audio_encoder.{new}"
        if key.startswith(VISION):
            new = vision_key(key[len(VISION):])
            return None if new is None else f"vision_encoder.{new}"
        if key.startswith("thinker.model."):
            return "thinker." + key[len("thinker.model."):]
        if key.startswith("talker.model."):
            return "talker." + key[len("talker.model."):]
        if key.startswith("talker.thinker_to_talker_proj."):
            return "talker.proj." + key.rsplit(".", 1)[1]
        if key.startswith(DIT):
            new = dit_key(key[len(DIT):])
            return None if new is None else f"dit.{new}"
        if key.startswith(VOCODER):
            return f"vocoder.{bigvgan_key(key[len(VOCODER):])}"
        return None

    def import_tensor(self, key: str, tensor: Tensor) -> list[Piece]:
        if key in ("talker.model.embed_tokens.weight", "talker.codec_head.weight"):
            name = "talker.codec_embed.weight" if "embed" in key else "talker.head.weight"
            return [(name, 0, self._codec_rows(tensor))]
        name = self.own_name(key)
        if name is None:
            return []
        if name == "vision_encoder.patch_embed.weight":  # a Conv3d with stride = kernel: a linear map
            tensor = tensor.reshape(tensor.shape[0], -1)
        pieces: list[Piece] = [(name, 0, tensor)]
        if key == "thinker.model.embed_tokens.weight":  # the rows transformers' talker reads by id
            width = tensor.shape[1]
            pieces += [("talker.text_embed.weight", 0, tensor[self.ids["text_end"]]),
                       ("talker.text_embed.weight", width, tensor[self.ids["text_pad"]])]
            pieces += [("talker.speaker_embed.weight", n * width, tensor[b]) for n, b in enumerate(self.bos)]
        return pieces

    def keep(self, key: str) -> bool:
        # whole tables dual_track holds only some rows of, and tensors no forward reads
        return key in ("talker.model.embed_tokens.weight", "talker.codec_head.weight") or (
            key.startswith(AUDIO) and audio_key(key[len(AUDIO):]) is None) or (
            key.startswith(VISION) and vision_key(key[len(VISION):]) is None) or (
            key.startswith(DIT) and dit_key(key[len(DIT):]) is None)

    def reference_mels(self, folder: Path) -> dict[str, Tensor]:
        spk = folder / "spk_dict.pt"
        if not spk.is_file():
            return {}
        return {str(n): torch.as_tensor(v["ref_mel"]) for n, v in load_file(spk, mmap=False).items()
                if v.get("ref_mel") is not None}

    def import_extra(self, folder: Path) -> list[Piece]:
        spk = folder / "spk_dict.pt"
        if not spk.is_file():
            return []
        voices = load_file(spk, mmap=False)
        pieces = []
        for n, v in enumerate(voices.values()):
            cond = torch.as_tensor(v["cond"]).reshape(-1)
            pieces.append(("dit.speaker_embed.weight", n * cond.numel(), cond))
        return pieces

    # ---- export --------------------------------------------------------------------
    def unsupported(self, cfg: Any) -> list[str]:
        want = {"thinker": "qwen2", "audio_encoder": "whisper_audio", "vision_encoder": "qwen_vit",
                "position": "tmrope", "talker": "dual_track", "dit": "flow_dit", "vocoder": "bigvgan"}
        bad = [f"{slot}={cfg.slot(slot).name} (Qwen2.5-Omni's is {name})"
               for slot, name in want.items() if cfg.slot(slot).name != name]
        if cfg.vocoder.name == "bigvgan" and (cfg.vocoder.input, cfg.vocoder.output) != ("qwen_log_mel", "clamp"):
            bad.append("vocoder=bigvgan reads normalised frames and ends in tanh; transformers' BigVGAN reads "
                       "Qwen's log-mel and clamps (vocoder.input=qwen_log_mel vocoder.output=clamp)")
        return bad

    def export_specs(self, cfg: Any, source: Path | None, own: dict[str, TensorSpec],
                     kept: dict[str, TensorSpec]) -> tuple[dict[str, TensorSpec], dict[str, Any]]:
        if source is None:
            raise HFError("export --format hf writes the config.json and the tensors omnitrain does not hold "
                          "from the import the model started from; this model has none. Start training "
                          "from a bundle made by `omnitrain import-hf` (init_from=BUNDLE)")
        config = json.loads((source / "config.json").read_text())
        self._read_ids(config, source)
        info = json.loads((source / "source.json").read_text())
        specs = {k: TensorSpec(tuple(shape), getattr(torch, dtype)) for k, (dtype, shape) in info["tensors"].items()}
        self.has_talker = any(k.startswith(TALKER) for k in specs)
        self.shapes = {k: s.shape for k, s in specs.items()}
        for key, spec in specs.items():  # every omnitrain tensor a key reads must have the shape it had
            name = self.own_name(key)
            if name is not None and name in own and own[name].numel != spec.numel:
                raise HFError(f"'{name}' has shape {own[name].shape}, the imported '{key}' had {spec.shape}: "
                              "the model was changed after the import; transformers would not load it")
        return specs, config

    def export_tensor(self, key: str, get: Callable[[str], Tensor], kept: Callable[[str], Tensor]) -> Tensor:
        if key == "thinker.model.embed_tokens.weight":
            table = get("thinker.embed_tokens.weight").clone()
            # transformers' Talker reads these rows of the Thinker's table; dual_track trained its own copies
            text = get("talker.text_embed.weight")
            table[self.ids["text_end"]], table[self.ids["text_pad"]] = text[0], text[1]
            if self.bos:
                speakers = get("talker.speaker_embed.weight")
                for n, b in enumerate(self.bos):
                    table[b] = speakers[n]
            return table
        if key in ("talker.model.embed_tokens.weight", "talker.codec_head.weight"):
            table = kept(key).clone()
            rows = get("talker.codec_embed.weight" if "embed" in key else "talker.head.weight")
            i, v = self.ids, self.codec_vocab
            table[:v] = rows[:v]
            for n, special in enumerate(("codec_pad", "codec_start", "codec_end", "codec_mask")):
                table[i[special]] = rows[v + n]
            return table
        if self.keep(key):
            return kept(key)
        name = self.own_name(key)
        if name is None:
            raise HFError(f"no omnitrain tensor for transformers key '{key}'")
        return get(name).reshape(self.shapes[key]) if name == "vision_encoder.patch_embed.weight" else get(name)

    def export_files(self, cfg: Any, source: Path | None, out: Path, get: Callable[[str], Tensor]) -> list[str]:
        written = []
        spk = source / "spk_dict.pt" if source is not None else None
        if spk is not None and spk.is_file():
            voices = load_file(spk, mmap=False)
            table = get("dit.speaker_embed.weight")
            for n, v in enumerate(voices.values()):  # the DiT's trained voice vectors
                v["cond"] = table[n].to(torch.as_tensor(v["cond"]).dtype).reshape(v["cond"].shape).clone()
            torch.save(voices, out / "spk_dict.pt")
            written.append("spk_dict.pt")
        return written


FORMAT = register_format(QwenOmniFormat())
