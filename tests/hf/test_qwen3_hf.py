"""import-hf / export --format hf for Qwen3-Omni (``qwen3_omni_moe``): a tiny random release
saved by transformers comes back bit for bit from each layout it may be stored in (per-expert
tensors, as the release and ``save_pretrained`` write them; transformers' fused 3-D experts;
the Thinker alone), the Talker, its code predictor and Code2Wav mapped to omnitrain's slots; a
fine-tuned model exports to a folder ``Qwen3OmniMoeForConditionalGeneration`` loads with
omnitrain's logits. The logits of image, audio and video inputs after an import:
tests/plugins/test_qwen3_thinker_parity.py; speech: tests/hf/test_qwen3_speech_hf.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from omnitrain.bundle import export_bundle, load_bundle
from omnitrain.cli import main
from omnitrain.hf.importer import import_hf
from tests.hf.test_export import tensors
from tests.hf.tiny_qwen3_omni import codes_demo as tiny_codes_demo
from tests.hf.tiny_qwen3_omni import save_tiny

transformers = pytest.importorskip("transformers")


def thinker_logits(model, ids: torch.Tensor) -> torch.Tensor:
    pos = torch.arange(ids.shape[1])[None, None].expand(3, 1, -1)
    with torch.no_grad():
        return model.thinker.logits(model.thinker(model.thinker.embed(ids), pos, torch.ones_like(ids)).hidden)


def hf_thinker_logits(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import Qwen3OmniMoeForConditionalGeneration

    model = Qwen3OmniMoeForConditionalGeneration.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    with torch.no_grad():
        return model.eval().thinker(input_ids=ids).logits


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp("qwen3")
    save_tiny(root / "qwen3")
    summary = import_hf(root / "qwen3", root / "bundle")
    return root, summary


@pytest.mark.parametrize("layout,dtype", [("per_expert", torch.float32), ("fused", torch.bfloat16),
                                          ("thinker", torch.float32)])
def test_import_then_export_is_bit_identical(layout, dtype, release, tmp_path, capsys):
    root, summary = release
    if layout == "per_expert":
        src, bundle = root / "qwen3", root / "bundle"
    else:
        src, bundle = tmp_path / layout, tmp_path / "bundle"
        save_tiny(src, layout, dtype=dtype)
        summary = import_hf(src, bundle)
    assert len(list(src.glob("model-*.safetensors"))) > 3  # really sharded
    out = tmp_path / "out"
    assert main(["export", str(bundle), str(out), "--format", "hf"]) == 0
    before, after = tensors(src), tensors(out)
    assert set(before) == set(after)
    assert [k for k in before if before[k].dtype != after[k].dtype or not torch.equal(before[k], after[k])] == []
    speech = [k for k in before if k.startswith(("talker.", "code2wav."))]
    assert summary["kept"] == 0 and (len(speech) > 100) == (layout != "thinker")  # every tensor mapped
    assert (summary["left_random"] == {}) == (layout != "thinker")  # a Thinker-only folder: speech at random
    experts = [k for k in before if ".experts." in k and not k.startswith("talker.")]
    assert len(experts) == (2 if layout == "fused" else 12)  # one MoE layer of 4 experts
    assert json.loads((out / "config.json").read_text())["model_type"] == json.loads(
        (src / "config.json").read_text())["model_type"]


def test_config_and_logits_follow_the_checkpoint(release):
    root, summary = release
    model, cfg = load_bundle(root / "bundle")
    t = cfg.thinker
    assert (t.name, t.experts, t.top_k, list(t.mlp_only_layers), t.head_dim, t.router_aux_coef) == (
        "qwen3_moe", 4, 2, [0], 8, 0.002)
    assert list(cfg.vision_encoder.deepstack_visual_indexes) == [0, 1] and cfg.position.mrope_interleaved
    assert cfg.position.position_id_per_seconds == 13 and list(cfg.position.mrope_section) == [2, 1, 1]
    assert summary["left_random"] == {}
    assert (cfg.talker.name, cfg.vocoder.name, cfg.dit.name, cfg.codec.name) == (
        "qwen3_moe", "code2wav", "none", "qwen3_omni_codes")
    assert (cfg.codec.groups, cfg.codec.vocab_size, list(cfg.speech.speakers)) == (3, 64, ["chelsie", "ethan"])
    assert list(cfg.talker.speaker_ids) == ["chelsie:81", "ethan:80"] and cfg.talker.codec_eos_id == 72
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(0))
    assert torch.equal(thinker_logits(model, ids), hf_thinker_logits(root / "qwen3", ids))  # measured: equal


@pytest.fixture(scope="module")
def codes_demo(tmp_path_factory):
    return tiny_codes_demo(tmp_path_factory.mktemp("codes_demo"))


def test_fine_tuned_checkpoint_exports_to_transformers(release, codes_demo, tmp_path):
    """5 steps from the imported bundle (init_from) on demo shards in the release's code
    space, the Thinker and the Talker both training; the exported folder loads in
    transformers and gives the fine-tuned Thinker's logits and Talker weights."""
    root, _ = release
    overrides = (root / "bundle" / "hf" / "overrides.txt").read_text().split()
    run, data = tmp_path / "run", codes_demo
    assert main(["train", "recipe=smoke", *overrides, f"init_from={root / 'bundle'}",
                 f"data.train_shards={data}/train-*.tar", f"data.val_shards={data}/val-*.tar",
                 f"run_dir={run}", "logger=csv", "trainer.max_steps=5", "trainer.val_check_interval=5",
                 "checkpoint.every_n_steps=5", "optim.lr=1e-3", "optim.warmup_steps=0"]) == 0
    ckpt = run / "checkpoints" / "last.ckpt"
    assert main(["export", str(ckpt), str(tmp_path / "hf"), "--format", "hf"]) == 0
    model, _ = load_bundle(export_bundle(ckpt, tmp_path / "bundle"))
    ids = torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(1))
    trained = thinker_logits(model, ids)
    original, _ = load_bundle(root / "bundle")
    assert (trained - thinker_logits(original, ids)).abs().max().item() > 1e-3  # it did train (measured 0.37)
    got = hf_thinker_logits(tmp_path / "hf", ids)
    assert (got - trained).abs().max().item() < 1e-4  # measured: 0
    before, after = tensors(root / "qwen3"), tensors(tmp_path / "hf")
    trained_talker = [k for k in before if k.startswith("talker.") and not torch.equal(before[k], after[k])]
    assert len(trained_talker) > 20  # the Talker and its code predictor trained and came back
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("code2wav."))  # no loss reaches it


def test_tokenizer_files_travel_and_read_as_qwen3_omni(tmp_path):
    """A folder with Qwen3-Omni's tokenizer files imports with tokenizer=qwen3_omni reading the
    bundle's copy; the exported folder's tokenizer gives transformers the same ids."""
    from transformers import AutoTokenizer

    from omnitrain.registry import build
    from tests.plugins.test_qwen3_tokenizer import make_qwen3_tokenizer

    save_tiny(tmp_path / "qwen3", "thinker", vocab=448)  # the tiny BPE: 400 merges + the specials
    make_qwen3_tokenizer(tmp_path / "qwen3")
    import_hf(tmp_path / "qwen3", tmp_path / "bundle")
    _, cfg = load_bundle(tmp_path / "bundle")
    assert cfg.tokenizer.name == "qwen3_omni" and Path(cfg.tokenizer.path) == tmp_path / "bundle" / "tokenizer"
    ours = build("tokenizer", cfg.tokenizer)
    assert ours.vocab_size == 448 and ours.special_id("audio") == ours._tok.token_to_id("<|audio_pad|>")
    assert main(["export", str(tmp_path / "bundle"), str(tmp_path / "out"), "--format", "hf"]) == 0
    text = "Which digits do you hear? 7 0"
    assert AutoTokenizer.from_pretrained(tmp_path / "out").encode(text) == ours.encode(text)
