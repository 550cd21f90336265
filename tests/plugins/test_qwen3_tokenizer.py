"""``tokenizer=qwen3_omni`` lays a conversation out exactly as transformers' Qwen3-Omni
processor (``Qwen3OmniMoeProcessor``) does: this family's media tokens, AuT's audio token
counts, a video's own audio merged with its frames on time, no default system prompt.

The tokenizer is the tiny BPE of ``test_qwen2_tokenizer`` with Qwen3-Omni's special tokens
added and named in its tokenizer_config.json, as the release's is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnitrain.data.media import load_audio, load_image, load_video
from omnitrain.data.sample_builder import SampleBuilder
from omnitrain.run_config import compose_config
from omnitrain.tokens import IGNORE_INDEX
from omnitrain_plugins.qwen3_omni.tokenizer import QWEN3_MEDIA_TOKENS
from tests.plugins.test_qwen2_tokenizer import long_clip, make_tokenizer, video_bounds

pytest.importorskip("transformers")

# tokenizer_config.json's keys for them (the processor reads tokenizer.audio_token, ...)
CONFIG_KEYS = {"audio": "audio_token", "audio_bos": "audio_bos_token", "audio_eos": "audio_eos_token",
               "image": "image_token", "video": "video_token", "vision_bos": "vision_bos_token",
               "vision_eos": "vision_eos_token"}
# Qwen3-Omni's chat template, its media parts (no default system turn)
TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' %}"
    "<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'audio' %}"
    "<|audio_start|><|audio_pad|><|audio_end|>{% elif content['type'] == 'video' %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_qwen3_tokenizer(folder: Path) -> Path:
    from tokenizers import AddedToken
    from tokenizers import Tokenizer as HFTokenizer

    make_tokenizer(folder)
    tok = HFTokenizer.from_file(str(folder / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN3_MEDIA_TOKENS.values()])
    tok.save(str(folder / "tokenizer.json"))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update({key: QWEN3_MEDIA_TOKENS[role] for role, key in CONFIG_KEYS.items()}, chat_template=TEMPLATE)
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return folder


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    return make_qwen3_tokenizer(tmp_path_factory.mktemp("qwen3_tok"))


def test_conversation_with_every_medium_matches_transformers(tok_dir, demo_dir, tmp_path):
    from transformers import AutoTokenizer, Qwen3OmniMoeProcessor, WhisperFeatureExtractor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    heldout = demo_dir / "heldout"
    audio, image, video = (next(heldout.glob(f"*_{k}_*")) for k in ("audio", "image", "video"))
    long = long_clip(tmp_path / "long.mp4")
    conv = {"turns": [
        {"role": "user", "content": [{"audio": str(audio)}, {"image": str(image)},
                                     {"video": str(long), "use_audio": True}, {"video": str(video)},
                                     {"text": "Which digits do you hear and see?"}]},
        {"role": "assistant", "content": [{"text": "7 0"}]},
    ]}
    cfg = compose_config(["recipe=smoke", "tokenizer=qwen3_omni", f"tokenizer.path={tok_dir}",
                          "thinker=qwen3_moe", "audio_encoder=qwen3_aut", "vision_encoder=qwen3_vit",
                          "position=qwen3_tmrope"])
    builder = SampleBuilder.from_config(cfg)
    assert builder.tok.default_system is None
    ex = builder.build(conv, lambda p: Path(p).read_bytes(), "k")

    v = cfg.vision_encoder
    sizes = dict(min_pixels=v.min_pixels, max_pixels=v.max_pixels, patch_size=v.patch_size,
                 temporal_patch_size=v.temporal_patch_size, merge_size=v.merge_size,
                 image_mean=[0.5] * 3, image_std=[0.5] * 3)
    proc = Qwen3OmniMoeProcessor(
        image_processor=Qwen2VLImageProcessorPil(**sizes),
        video_processor=Qwen2VLVideoProcessor(**sizes, cap_pixels_per_frame=False),
        feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=AutoTokenizer.from_pretrained(tok_dir),
        chat_template=TEMPLATE)
    vb = builder.vision
    clips = [load_video(f.read_bytes(), vb.video_fps, vb.min_frames, vb.max_frames, 16000, "video")
             for f in (long, video)]
    assert clips[0].fps == clips[1].fps
    messages = [{"role": t["role"], "content": [
        {"type": next(k for k in ("text", "audio", "image", "video") if k in p), **({"text": p["text"]} if "text" in p
                                                                                 else {})} for p in t["content"]]}
        for t in conv["turns"]]
    text = proc.apply_chat_template(messages, tokenize=False)
    wave = load_audio(audio.read_bytes(), 16000, "audio").numpy()
    out = proc(text=text, audio=[wave, clips[0].audio.numpy()], images=[load_image(image.read_bytes(), "image")],
               videos=[c.frames for c in clips], audio_from_video_indices=[None, 0], load_audio_from_video=True,
               videos_kwargs={**video_bounds(cfg.vision_encoder), "fps": clips[0].fps})
    hf_ids = list(out["input_ids"][0])
    assert ex.input_ids.tolist() == hf_ids
    sp = builder.special
    assert sp["audio"] == builder.tok._tok.token_to_id("<|audio_pad|>")
    body = ex.input_ids.tolist()  # the long clip's frames and audio really merge
    start = body.index(sp["audio_bos"], body.index(sp["vision_bos"], body.index(sp["image"])))
    runs = [k for k, prev in zip(body[start + 1:], [None, *body[start + 1:]], strict=False) if k != prev]
    assert runs[:4] == [sp["video"], sp["audio"], sp["video"], sp["audio"]]
    labelled = ex.labels[ex.labels != IGNORE_INDEX].tolist()
    assert labelled == [*builder.tok.encode("7 0"), builder.tok.im_end]
