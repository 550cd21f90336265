"""export --format hf: import -> export gives the release back bit for bit; a fine-tuned
checkpoint exports to a folder transformers loads offline, with omnitrain's logits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors import safe_open

from omnitrain.bundle import export_bundle, load_bundle
from omnitrain.cli import main
from omnitrain.data.build.demo import make_demo
from omnitrain.hf.exporter import export_hf
from omnitrain.hf.formats import HFError, shards
from omnitrain.hf.importer import import_hf
from omnitrain.registry import build
from tests.helpers import SMALL_DEMO
from tests.hf.tiny_qwen_omni import save_tiny

transformers = pytest.importorskip("transformers")


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for path in shards(folder):
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118
                out[key] = f.get_tensor(key)
    return out


def thinker_logits_hf(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import Qwen2_5OmniForConditionalGeneration

    model = Qwen2_5OmniForConditionalGeneration.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    with torch.no_grad():
        return model.eval().thinker(input_ids=ids).logits


def thinker_logits(model, ids: torch.Tensor) -> torch.Tensor:
    pos = torch.arange(ids.shape[1])[None, None].expand(3, 1, -1)
    with torch.no_grad():
        return model.thinker.logits(model.thinker(model.thinker.embed(ids), pos, torch.ones_like(ids)))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("hfx")
    save_tiny(root / "qwen")
    import_hf(root / "qwen", root / "bundle")
    return root


def test_import_then_export_is_bit_identical(release, capsys):
    root = release
    assert main(["export", str(root / "bundle"), str(root / "out"), "--format", "hf"]) == 0
    assert "transformers folder" in capsys.readouterr().out
    before, after = tensors(root / "qwen"), tensors(root / "out")
    assert set(before) == set(after)
    different = [k for k in before if before[k].dtype != after[k].dtype or not torch.equal(before[k], after[k])]
    assert different == []
    spk_a, spk_b = torch.load(root / "qwen" / "spk_dict.pt"), torch.load(root / "out" / "spk_dict.pt")
    assert list(spk_a) == list(spk_b)
    for name in spk_a:
        assert torch.equal(spk_a[name]["cond"], spk_b[name]["cond"]) and spk_a[name]["bos_token"] == spk_b[name]["bos_token"]
    assert json.loads((root / "out" / "config.json").read_text())["model_type"] == "qwen2_5_omni"
    ids = torch.randint(0, 280, (1, 10))
    model, _ = load_bundle(root / "bundle")
    assert torch.equal(thinker_logits_hf(root / "out", ids), thinker_logits(model, ids))  # measured 0 (20 prompts)


def test_export_names_a_slot_transformers_lacks(release, tmp_path):
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for path in (release / "bundle").rglob("*"):
        if path.is_file():
            (bundle / path.relative_to(release / "bundle")).parent.mkdir(parents=True, exist_ok=True)
            (bundle / path.relative_to(release / "bundle")).write_bytes(path.read_bytes())
    cfg = OmegaConf.load(bundle / "config.yaml")
    cfg.dit = {"name": "full_dit"}
    OmegaConf.save(cfg, bundle / "config.yaml")
    with pytest.raises(HFError, match="dit=full_dit"):
        export_hf(bundle, tmp_path / "out")


def test_init_from_a_hf_folder_says_to_import_it(release, tmp_path, capsys):
    from omnitrain.training.init_from import load_matching

    with pytest.raises(FileNotFoundError, match="this is a Hugging Face folder: run `omnitrain import-hf"):
        load_matching(torch.nn.Linear(1, 1), release / "qwen")


def test_fine_tuned_checkpoint_exports_to_transformers(release, tmp_path):
    """5 steps from the imported bundle (init_from), on demo shards whose speech codes fit
    the tiny code space; the exported folder's logits are the fine-tuned model's."""
    data = tmp_path / "data"
    codec = build("codec", {"name": "pitch", "sample_rate": 24000, "hop_length": 480, "semitones": 32})
    make_demo(data, codec, SMALL_DEMO, seed=0)
    overrides = json.loads((release / "bundle" / "hf" / "source.json").read_text())["overrides"]
    run = tmp_path / "run"
    assert main(["train", "recipe=smoke", *overrides, f"init_from={release / 'bundle'}",
                 f"data.train_shards={data}/train-*.tar", f"data.val_shards={data}/val-*.tar",
                 f"run_dir={run}", "logger=csv", "trainer.max_steps=5", "trainer.val_check_interval=5",
                 "checkpoint.every_n_steps=5", "optim.lr=1e-3", "optim.warmup_steps=0"]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    assert main(["export", str(ckpt), str(tmp_path / "hf"), "--format", "hf"]) == 0
    model, _ = load_bundle(export_bundle(ckpt, tmp_path / "bundle"))
    ids = torch.randint(0, 280, (1, 10))
    trained = thinker_logits(model, ids)
    original, _ = load_bundle(release / "bundle")
    assert (trained - thinker_logits(original, ids)).abs().max().item() > 1e-4  # it did train
    assert torch.equal(thinker_logits_hf(tmp_path / "hf", ids), trained)  # measured 0: bit-identical
    from omnitrain.inference.generate import Generator  # the voices' ref_mel, found via init_from

    assert int(Generator(tmp_path / "bundle").condition("Ethan").reference_lengths) == 30


def test_tokenizer_and_processor_files_travel(tmp_path):
    """A folder with Qwen's tokenizer files imports with tokenizer=qwen2 reading the bundle's
    copy; the exported folder's tokenizer and processor config load in transformers and
    tokenise as the release's do."""
    from transformers import (
        AutoConfig,
        AutoProcessor,
        AutoTokenizer,
        Qwen2_5OmniProcessor,
        WhisperFeatureExtractor,
    )
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    from tests.plugins.test_qwen2_tokenizer import make_tokenizer

    hf = save_tiny(tmp_path / "qwen", vocab=448)  # the tiny BPE has 400 merges + Qwen's 14 specials
    make_tokenizer(tmp_path / "qwen")
    Qwen2_5OmniProcessor(  # the release's processor: Whisper features, Qwen2-VL image and video
        image_processor=Qwen2VLImageProcessor(), video_processor=Qwen2VLVideoProcessor(),
        feature_extractor=WhisperFeatureExtractor(feature_size=128),
        tokenizer=AutoTokenizer.from_pretrained(tmp_path / "qwen", local_files_only=True),
    ).save_pretrained(tmp_path / "qwen")
    summary = import_hf(tmp_path / "qwen", tmp_path / "bundle")
    assert "tokenizer=qwen2" in summary["overrides"]
    model, cfg = load_bundle(tmp_path / "bundle")
    assert cfg.tokenizer.name == "qwen2" and Path(cfg.tokenizer.path) == (tmp_path / "bundle" / "tokenizer").resolve()
    assert model.thinker.embed_tokens.weight.shape[0] == 448
    text = "Which digits do you hear? 7 0<|im_end|>"
    release = AutoTokenizer.from_pretrained(tmp_path / "qwen", local_files_only=True)
    assert model.tokenizer.encode(text) == release(text)["input_ids"]
    assert export_hf(tmp_path / "bundle", tmp_path / "out")["tensors"] > 0
    exported = AutoTokenizer.from_pretrained(tmp_path / "out", local_files_only=True)
    assert exported(text)["input_ids"] == release(text)["input_ids"]
    assert AutoConfig.from_pretrained(tmp_path / "out", local_files_only=True).model_type == "qwen2_5_omni"
    processor = AutoProcessor.from_pretrained(tmp_path / "out", local_files_only=True)
    assert type(processor).__name__ == "Qwen2_5OmniProcessor"
    assert processor.tokenizer(text)["input_ids"] == release(text)["input_ids"]
    # every processor/tokenizer file of the release comes back as it was
    for path in (tmp_path / "qwen").iterdir():
        if path.suffix in (".json", ".jinja") and "safetensors" not in path.name:
            load = json.loads if path.suffix == ".json" else str
            want, got = load(path.read_text()), load((tmp_path / "out" / path.name).read_text())
            assert got == want, path.name

    # greedy decoding of a ChatML prompt: omnitrain's generate and transformers' generate
    # choose the same tokens (ids as omnitrain's template makes them)
    from omnitrain.inference.generate import Generator, user_turn

    gen = Generator(tmp_path / "bundle")
    example = gen.prompt(user_turn("Which digits do you hear? 7 0"))
    dec = gen.reply_text(example, max_new_tokens=8)
    ids = example.input_ids[None]
    with torch.no_grad():
        want = hf.thinker.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                   do_sample=False, eos_token_id=gen.eos)[0, ids.shape[1]:].tolist()
    assert len(dec.new) > 3 and dec.new == want
