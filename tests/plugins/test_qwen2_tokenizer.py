"""The qwen2 tokenizer lays a ChatML conversation out exactly as transformers' Qwen2.5-Omni
processor does: same text ids, same media placeholders, same audio/video interleaving.

The tokenizer is a tiny BPE trained here with the ``tokenizers`` library plus Qwen2.5-Omni's
special tokens, saved with a tokenizer_config.json and Qwen2.5-Omni's chat template.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from omnitrain.data.media import load_audio, load_image, load_video
from omnitrain.data.sample_builder import SampleBuilder
from omnitrain.registry import build
from omnitrain.run_config import compose_config
from omnitrain.tokens import IGNORE_INDEX

QWEN_SPLIT = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
              r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
# Qwen2.5-Omni's added tokens, in its id order (151643...)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>",
            "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_bos|>", "<|vision_eos|>", "<|vision_pad|>",
            "<|IMAGE|>", "<|VIDEO|>"]
# Qwen2.5-Omni's chat template (its chat_template.json)
TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}{% set video_count = "
    "namespace(value=0) %}{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}{% for content in "
    "message['content'] %}{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_bos|><|IMAGE|><|vision_eos|>{% elif content['type'] == 'audio' or 'audio' in content or "
    "'audio_url' in content %}{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio "
    "{{ audio_count.value }}: {% endif %}<|audio_bos|><|AUDIO|><|audio_eos|>{% elif content['type'] == 'video' or "
    "'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_bos|><|VIDEO|><|vision_eos|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)
SYSTEM = "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving " \
         "auditory and visual inputs, as well as generating text and speech."


def make_tokenizer(folder: Path) -> Path:
    """A Qwen2-shaped byte-level BPE (Qwen's split regex, no prefix space) with its specials."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    corpus = [SYSTEM, "Which digits do you hear and see? 7 0", "system\nuser\nassistant\n", "Say it: 4 9.",
              "Lines\n\nand paragraphs\n\n"]  # "\n\n" becomes one token, as in Qwen's vocabulary
    tok.train_from_iterator(corpus * 4, trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
        "bos_token": None, "unk_token": None, "errors": "replace", "model_max_length": 32768,
        "split_special_tokens": False, "clean_up_tokenization_spaces": False,
        "audio_token": "<|AUDIO|>", "audio_bos_token": "<|audio_bos|>", "audio_eos_token": "<|audio_eos|>",
        "image_token": "<|IMAGE|>", "video_token": "<|VIDEO|>", "vision_bos_token": "<|vision_bos|>",
        "vision_eos_token": "<|vision_eos|>", "chat_template": TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return folder


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("qwen_tok"))


def qwen_config(tok_dir: Path, *extra: str):
    return compose_config(["recipe=smoke", "tokenizer=qwen2", f"tokenizer.path={tok_dir}",
                           "audio_encoder=whisper_audio", "vision_encoder=qwen_vit", "position=tmrope", *extra])


def hf_processor(tok_dir: Path, vision_cfg):
    """transformers' Qwen2.5-Omni processor with the image and video processors Qwen2.5-Omni
    loads (Qwen2-VL's), built from the configured sizes; ``cap_pixels_per_frame=False`` is
    what an unset value means in transformers 5.23 (no total-video pixel budget). The
    processor's own video default (128 to 768 merged tokens of pixels a frame) overrides the
    video processor's min/max pixels: calls pass ``videos_kwargs=video_bounds(...)`` for other
    bounds, none for the release's."""
    from transformers import AutoTokenizer, Qwen2_5OmniProcessor, WhisperFeatureExtractor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    v = vision_cfg
    sizes = dict(min_pixels=v.min_pixels, max_pixels=v.max_pixels, patch_size=v.patch_size,
                 temporal_patch_size=v.temporal_patch_size, merge_size=v.merge_size)
    return Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessorPil(**sizes),
        video_processor=Qwen2VLVideoProcessor(**sizes, cap_pixels_per_frame=False),
        feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=AutoTokenizer.from_pretrained(tok_dir),
        chat_template=TEMPLATE)


def video_bounds(vision_cfg) -> dict:
    """The configured video frame bounds (the image ones where unset), as the processor takes them."""
    v = vision_cfg
    low = v.video_min_pixels if v.video_min_pixels is not None else v.min_pixels
    high = v.video_max_pixels if v.video_max_pixels is not None else v.max_pixels
    return {"size": {"shortest_edge": low, "longest_edge": high}}


def long_clip(path: Path) -> Path:
    """5 s of video (2 fps) with a 5 s tone: TMRoPE's 2 s chunks interleave video and audio."""
    from omnitrain.data.build.media_writers import encode_mp4

    t = np.arange(5 * 16000) / 16000
    frames = np.stack([np.full((56, 84, 3), 20 * i, dtype=np.uint8) for i in range(10)])
    path.write_bytes(encode_mp4(frames, 2.0, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)))
    return path


def test_chatml_conversation_with_every_medium_matches_transformers(tok_dir, demo_dir, tmp_path):
    heldout = demo_dir / "heldout"
    audio, image, video = (next(heldout.glob(f"*_{k}_*")) for k in ("audio", "image", "video"))
    long = long_clip(tmp_path / "long.mp4")
    conv = {"turns": [
        {"role": "system", "content": [{"text": "You answer with two digits."}]},
        {"role": "user", "content": [{"audio": str(audio)}, {"image": str(image)},
                                     {"video": str(long), "use_audio": True}, {"video": str(video)},
                                     {"text": "Which digits do you hear and see?"}]},
        {"role": "assistant", "content": [{"text": "7 0"}]},
        {"role": "user", "content": [{"text": "\nSay it "}, {"text": "again."}]},  # merges with the header
        {"role": "assistant", "content": [{"text": "7 0"}]},
    ]}
    cfg = qwen_config(tok_dir)
    builder = SampleBuilder.from_config(cfg)
    ex = builder.build(conv, lambda p: Path(p).read_bytes(), "k")

    # transformers: the chat template renders the text, the processor expands the placeholders
    v = builder.vision
    clips = [load_video(f.read_bytes(), v.video_fps, v.min_frames, v.max_frames, 16000, "video") for f in (long, video)]
    assert clips[0].fps == clips[1].fps  # one fps for the processor call
    proc = hf_processor(tok_dir, cfg.vision_encoder)
    messages = [
        {"role": t["role"], "content": [
            {"type": next(k for k in ("text", "audio", "image", "video") if k in p),
             **({"text": p["text"]} if "text" in p else {})} for p in t["content"]]}
        for t in conv["turns"]]
    text = proc.apply_chat_template(messages, tokenize=False)
    wave = load_audio(audio.read_bytes(), 16000, "audio").numpy()
    rgb = load_image(image.read_bytes(), "image")
    out = proc(text=text, audio=[wave, clips[0].audio.numpy()], images=[rgb], videos=[c.frames for c in clips],
               audio_from_video_indices=[None, 0], load_audio_from_video=True, fps=clips[0].fps,
               videos_kwargs=video_bounds(cfg.vision_encoder))
    hf_ids = list(out["input_ids"][0])

    assert ex.input_ids.tolist() == hf_ids
    # counts transformers computed from the same media: image and video grids, both audio lengths
    assert [tuple(g) for g in out["image_grid_thw"].tolist()] == [ex.vision_grids[0]]
    assert [tuple(g) for g in out["video_grid_thw"].tolist()] == ex.vision_grids[1:]
    frames = out["feature_attention_mask"].sum(-1)
    hf_audio = ((frames - 1) // 2 + 1 - 2) // 2 + 1  # transformers' _get_feat_extract_output_lengths
    sp = builder.special
    assert int(hf_audio.sum()) == int((ex.input_ids == sp["audio"]).sum())
    # the long clip really interleaves: video, audio, video, audio... inside one audio_bos/eos pair
    body = ex.input_ids.tolist()
    start = body.index(sp["audio_bos"], body.index(sp["vision_bos"], body.index(sp["image"])))
    runs = [k for k, prev in zip(body[start + 1:], [None, *body[start + 1:]]) if k != prev]
    assert runs[:4] == [sp["video"], sp["audio"], sp["video"], sp["audio"]]
    assert len(builder.tok.encode("\n\n")) == 1 and builder.tok.encode("\n\n")[0] in hf_ids
    # loss: both replies and their <|im_end|>, nothing of the system, user or role headers
    tok = builder.tok
    labelled = ex.labels[ex.labels != IGNORE_INDEX].tolist()
    assert labelled == [*tok.encode("7 0"), tok.im_end] * 2


RELEASE_PIXELS = ("vision_encoder.min_pixels=3136", "vision_encoder.max_pixels=12845056")  # its preprocessor_config


@pytest.mark.parametrize("frames,height,width,pixels", [
    (4, 56, 84, RELEASE_PIXELS),  # no resize
    (5, 56, 84, RELEASE_PIXELS),  # odd frame count: the last frame repeats to fill the temporal patch
    (7, 100, 150, RELEASE_PIXELS),  # rounded to multiples of 28
    (5, 30, 40, RELEASE_PIXELS),  # below min_pixels: scaled up
    (9, 360, 640, ("vision_encoder.max_pixels=50176",)),  # above max_pixels: scaled down
    (4, 56, 84, ("model=omni7b", "size=tiny")),  # the release's video bounds: up to 128 merged tokens a frame
    (5, 720, 1280, ("model=omni7b", "size=tiny", "data.max_tokens=4096")),  # and down to 768
])
def test_video_grid_and_token_count_match_transformers(tok_dir, frames, height, width, pixels):
    """A video's grid (t, h, w) and its number of <|VIDEO|> tokens are those of transformers'
    own video processor (Qwen2-VL's, which Qwen2.5-Omni loads) for the same decoded frames."""
    from omnitrain.data.build.media_writers import encode_mp4

    rng = np.random.default_rng(0)
    clip = encode_mp4(rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8), 2.0)
    cfg = qwen_config(tok_dir, *pixels)
    builder = SampleBuilder.from_config(cfg)
    ex = builder.build({"turns": [{"role": "user", "content": [{"video": "v"}]}]}, lambda p: clip, "k")

    v = builder.vision
    decoded = load_video(clip, v.video_fps, v.min_frames, v.max_frames, None, "video")
    assert len(decoded.frames) == frames
    proc = hf_processor(tok_dir, cfg.vision_encoder)
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "video"}]}], tokenize=False)
    release = "model=omni7b" in pixels  # the processor's own defaults, as Qwen2.5-Omni users call it
    out = proc(text=text, videos=[decoded.frames], fps=decoded.fps,
               **({} if release else {"videos_kwargs": video_bounds(cfg.vision_encoder)}))
    assert ex.vision_grids == [tuple(out["video_grid_thw"][0].tolist())]
    video = builder.special["video"]
    assert int((ex.input_ids == video).sum()) == out["input_ids"][0].count(video)


def test_video_patches_match_transformers_layout(tok_dir):
    """Frames that need no resize give transformers' ``pixel_values_videos`` row for row:
    normalisation, the temporal padding and the merge-ordered patch layout."""
    cfg = qwen_config(tok_dir)
    frames = np.random.default_rng(0).integers(0, 256, (5, 56, 84, 3), dtype=np.uint8)
    patches, _ = SampleBuilder.from_config(cfg).vision.video(frames)
    want = hf_processor(tok_dir, cfg.vision_encoder).video_processor([frames])["pixel_values_videos"]
    assert patches.shape == want.shape
    assert (patches - want).abs().max().item() < 1e-6  # measured 2.4e-7


def test_default_system_prompt_and_generation_prompt(tok_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tok_dir)
    user = [{"role": "user", "content": [{"type": "text", "text": "Say it: 4 9."}]}]
    conv = {"turns": [{"role": "user", "content": [{"text": "Say it: 4 9."}]}]}

    def render(messages):
        text = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, chat_template=TEMPLATE)
        return hf(text)["input_ids"]

    # the configured default (Qwen2.5-Omni's speaking prompt) is put first
    b = SampleBuilder.from_config(qwen_config(tok_dir))
    with_default = [{"role": "system", "content": [{"type": "text", "text": SYSTEM}]}, *user]
    assert b.build(conv, lambda p: b"", "g", for_generation=True).input_ids.tolist() == render(with_default)
    # the chat template's own fallback, reproduced by setting it
    b = SampleBuilder.from_config(qwen_config(tok_dir, "tokenizer.default_system=You are a helpful assistant."))
    assert b.build(conv, lambda p: b"", "g", for_generation=True).input_ids.tolist() == render(user)
    # null: no system turn at all
    b = SampleBuilder.from_config(qwen_config(tok_dir, "tokenizer.default_system=null"))
    ids = b.build(conv, lambda p: b"", "g", for_generation=True).input_ids.tolist()
    assert ids == hf("<|im_start|>user\nSay it: 4 9.<|im_end|>\n<|im_start|>assistant\n")["input_ids"]


def test_specials_decode_save_and_errors(tok_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = build("tokenizer", qwen_config(tok_dir, "tokenizer.vocab_size=512").tokenizer)
    hf = AutoTokenizer.from_pretrained(tok_dir)
    sp = tok.special_ids()
    assert sp["audio"] == hf.convert_tokens_to_ids("<|AUDIO|>") and sp["video"] == hf.convert_tokens_to_ids("<|VIDEO|>")
    assert sp["pad"] == hf.pad_token_id and sp["eos"] == hf.eos_token_id == tok.stop_id()
    assert tok.vocab_size == 512  # padded to the checkpoint's embedding rows
    text = "Which digits do you hear? 7 0 ünïcode"
    assert tok.encode(text) == hf(text)["input_ids"]
    assert tok.decode([*tok.encode(text), tok.stop_id(), 511]) == text  # specials and padding ids dropped
    # save: the bundle's copy loads alone, in omnitrain and in transformers
    assert sorted(tok.save(tmp_path)) == ["tokenizer.json", "tokenizer_config.json"]
    again = build("tokenizer", qwen_config(tmp_path).tokenizer)
    assert again.encode(text) == tok.encode(text)
    assert AutoTokenizer.from_pretrained(tmp_path)(text)["input_ids"] == tok.encode(text)
    with pytest.raises(ValueError, match="tokenizer.path"):
        build("tokenizer", qwen_config(tmp_path / "nowhere").tokenizer)
    spec = json.loads((tok_dir / "tokenizer.json").read_text())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] != "<|VIDEO|>"]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"no token '<\|VIDEO\|>'"):
        build("tokenizer", qwen_config(tmp_path / "bad").tokenizer)


def test_pad_and_eos_default_to_endoftext(tok_dir, tmp_path):
    (tmp_path / "tokenizer.json").write_text((tok_dir / "tokenizer.json").read_text())  # no tokenizer_config.json
    tok = build("tokenizer", qwen_config(tmp_path).tokenizer)
    end = tok._tok.token_to_id("<|endoftext|>")
    assert tok.special_id("pad") == tok.special_id("eos") == end
    assert tok.stop_id() == tok.im_end  # a reply still ends at <|im_end|>
    assert np.all(np.array(tok.turn_tokens("assistant").close) == [tok.im_end])


def test_trains_exports_and_generates_with_its_own_copy(tok_dir, demo_dir, tmp_path):
    """tokenizer=qwen2 trains on the demo shards (the default system prompt put first), the
    bundle carries the tokenizer files and loads after the original folder is gone."""
    import dataclasses
    import shutil

    from omnitrain.cli import main
    from omnitrain.inference.generate import Generator, user_turn
    from tests.helpers import smoke_overrides

    own = tmp_path / "tok"
    shutil.copytree(tok_dir, own)
    run = tmp_path / "run"
    overrides = smoke_overrides(demo_dir, run, "trainer.max_steps=2", "tokenizer=qwen2", f"tokenizer.path={own}",
                                "checkpoint.every_n_steps=1", "trainer.limit_val_batches=0")
    assert main(["train", *overrides]) == 0
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), str(tmp_path / "bundle")]) == 0
    shutil.rmtree(own)
    assert sorted(p.name for p in (tmp_path / "bundle" / "tokenizer").iterdir()) == [
        "tokenizer.json", "tokenizer_config.json"]
    gen = Generator(tmp_path / "bundle")
    ex = gen.prompt(user_turn("Say 4 9.", system="Be brief."))
    tok = gen.model.tokenizer
    assert ex.input_ids.tolist() == [tok.im_start, *tok.encode("system\nBe brief."), tok.im_end, *tok.encode("\n"),
                                     tok.im_start, *tok.encode("user\nSay 4 9."), tok.im_end, *tok.encode("\n"),
                                     tok.im_start, *tok.encode("assistant\n")]
    assert gen.eos == tok.im_end
    assert isinstance(gen.model.tokenizer.decode(gen.reply_text(ex, max_new_tokens=3).new), str)
    # generate.system (--system) replaces the tokenizer's default where the conversation has none
    gen.settings = dataclasses.replace(gen.settings, system="Be brief.")
    assert gen.prompt(user_turn("Say 4 9.")).input_ids.tolist() == ex.input_ids.tolist()
    assert main(["generate", str(tmp_path / "bundle"), "--text", "Say 4 9.", "--system", "Be brief.",
                 "--max-new-tokens", "2"]) == 0
