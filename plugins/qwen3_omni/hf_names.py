"""Qwen3-Omni's checkpoint tensor names -> omnitrain's, one tensor at a time.

``save_pretrained`` (and the release) write::

    thinker.model.{embed_tokens,layers,norm}.*, thinker.lm_head -> thinker (qwen3_moe)
    thinker.audio_tower.*                                       -> audio_encoder (qwen3_aut)
    thinker.visual.*                                            -> vision_encoder (qwen3_vit)
    talker.*                                                    -> talker (qwen3_moe: its names)
    code2wav.*                                                  -> vocoder (code2wav: its names)
    <...>.layers.N.mlp.experts.E.{gate,up,down}_proj.weight
        -> expert E's rows of layer N's 3-D ``gate_up_proj`` (gate, then up) and ``down_proj``

transformers' module names (``save_pretrained(save_original_format=False)``) say
``thinker.model.language_model.*``, ``thinker.model.audio_tower.*``, ``thinker.model.visual.*``
and keep each layer's experts fused, as omnitrain does; a Thinker-only folder (model_type
``qwen3_omni_moe_thinker``) has no ``thinker.`` prefix. All are read.
"""

from __future__ import annotations

import re

# (checkpoint prefix after an optional "thinker.", omnitrain prefix), first match wins
THINKER_PREFIXES = (("lm_head.", "thinker.lm_head."), ("model.language_model.", "thinker."),
                    ("model.audio_tower.", "audio_encoder."), ("audio_tower.", "audio_encoder."),
                    ("model.visual.", "vision_encoder."), ("visual.", "vision_encoder."), ("model.", "thinker."))
SPEECH_PREFIXES = (("talker.", "talker."), ("code2wav.", "vocoder."))
EXPERT = re.compile(r"^((?:thinker|talker\.model)\.layers\.\d+\.mlp\.experts)\.(\d+)\.(gate|up|down)_proj\.weight$")


def own_name(key: str, speech: bool = True) -> tuple[str, int, str] | None:
    """(omnitrain tensor, expert, part) holding checkpoint tensor ``key``: expert -1 and part
    "" for a whole tensor; None for one omnitrain does not hold (the speech side's, when
    ``speech`` is False: a model without Qwen3-Omni's Talker keeps them aside)."""
    if is_speech(key):
        if not speech:
            return None
        name = next(new + key[len(old):] for old, new in SPEECH_PREFIXES if key.startswith(old))
    else:
        rest = key.removeprefix("thinker.")
        name = next((new + rest[len(old):] for old, new in THINKER_PREFIXES if rest.startswith(old)), None)
    if name is None:
        return None
    match = EXPERT.match(name)
    if match is None:
        return name, -1, ""
    part = match.group(3)
    return f"{match.group(1)}.{'down_proj' if part == 'down' else 'gate_up_proj'}", int(match.group(2)), part


def is_speech(key: str) -> bool:
    return key.startswith(tuple(old for old, _ in SPEECH_PREFIXES))
