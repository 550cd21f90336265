"""LoRA: the adapter layer's math, training under auto / ZeRO-2 / ZeRO-3 on CPU with only
the adapters changing, the merged export equal to the adapter forward, the adapter-only
export, the plan's trainable count and the config checks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from omnitrain.bundle import export_bundle, load_bundle
from omnitrain.checkpoints import open_checkpoint
from omnitrain.cli import main
from omnitrain.config.validate import ConfigError
from omnitrain.data.pipeline import make_pipeline
from omnitrain.model.lora import load_adapter
from omnitrain.model.meta import meta_model
from omnitrain.model.omni_model import OmniModel
from omnitrain.nn.lora import add_lora, is_adapter, merge_lora_, merged_piece
from omnitrain.run_config import compose_config
from omnitrain.training.performance.flops import step_flops
from omnitrain.training.performance.model_stats import model_stats
from tests.helpers import model_outputs, smoke_overrides

LORA = ("lora.slots=[thinker,talker]", "lora.rank=4", "lora.alpha=8")
# the slots without adapters stay fixed too, so every non-adapter tensor must come back unchanged
FROZEN = "optim.freeze=[audio_encoder,vision_encoder,dit]"


def test_adapter_adds_scaled_low_rank_update_and_merges_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    x = torch.randn(4, 6)
    base = model(x)
    assert add_lora(model, ["0"], rank=2, alpha=6.0) == ["0"]
    assert torch.equal(model(x), base)  # B starts at zero: the base model
    lin = model[0]
    nn.init.normal_(lin.lora.B)
    want = model[2](torch.relu(x @ lin.weight.T + lin.bias + 3.0 * (x @ lin.lora.A.T @ lin.lora.B.T)))
    assert torch.allclose(model(x), want, atol=1e-6)  # measured 2.4e-7
    # a merge applied piece by piece (any cut of the flattened weight) equals W + scale B A
    full = lin.weight.detach().flatten()
    pieces = [merged_piece(full[i:j], i, 6, lin.lora.A.detach(), lin.lora.B.detach(), 3.0)
              for i, j in ((0, 4), (4, 17), (17, 30))]
    merged = torch.cat(pieces).view(5, 6)
    assert torch.allclose(merged, lin.weight + 3.0 * lin.lora.B @ lin.lora.A, atol=1e-6)  # measured 2.4e-7
    adapted = model(x)
    assert merge_lora_(model) == 1 and not hasattr(lin, "lora")
    assert torch.allclose(model(x), adapted, atol=1e-6)  # measured 3.6e-7
    assert torch.allclose(lin.weight, merged, atol=1e-6)  # measured 4.8e-7


def test_targets_that_match_nothing_or_tied_weights_are_refused():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    with pytest.raises(ValueError, match="'q_proj' matches no Linear"):
        add_lora(model, ["q_proj"], 2, 4.0)
    model[1].weight = model[0].weight
    with pytest.raises(ValueError, match="shares its weight"):
        add_lora(model, ["1"], 2, 4.0)


def test_config_checks_name_the_key():
    with pytest.raises(ConfigError, match="lora.slots: 'thinker' is also in optim.freeze"):
        compose_config(["recipe=smoke", "lora.slots=[thinker]", "optim.freeze=[thinker]"])
    with pytest.raises(ConfigError, match="lora.slots: 'codec' is not a trainable slot"):
        compose_config(["recipe=smoke", "lora.slots=[codec]"])
    with pytest.raises(ConfigError, match="lora.rank=0"):
        compose_config(["recipe=smoke", "lora.slots=[thinker]", "lora.rank=0"])
    # torch FSDP cannot save a model whose every parameter outside the wrapped blocks is frozen
    thinker_only = ["recipe=smoke", "lora.slots=[thinker]", "strategy=fsdp", "loss.codec=0", "loss.flow=0",
                    "optim.freeze=[audio_encoder,vision_encoder]"]
    with pytest.raises(ConfigError, match="strategy=fsdp cannot save this LoRA run"):
        compose_config(thinker_only)
    assert compose_config([*thinker_only, "lora.trainable=[norm.weight]"]).lora.trainable == ["norm.weight"]


def test_plan_counts_only_adapters_as_trainable():
    cfg = compose_config(["recipe=smoke", *LORA])
    model = meta_model(cfg)
    stats = model_stats(model, cfg)
    for slot in ("thinker", "talker"):
        adapters = sum(p.numel() for n, p in getattr(model, slot).named_parameters() if is_adapter(n))
        assert adapters > 0 and stats.slots[slot].trainable == adapters
    assert stats.slots["dit"].trainable == stats.slots["dit"].params  # not a LoRA slot
    # the built model is on the meta device: adapters allocate nothing, like the rest
    assert all(p.is_meta for p in model.parameters())


def test_flops_count_weight_gradients_of_the_adapters_only():
    full_cfg, lora_cfg = compose_config(["recipe=smoke"]), compose_config(["recipe=smoke", *LORA])
    full_stats, lora_stats = model_stats(meta_model(full_cfg), full_cfg), model_stats(meta_model(lora_cfg), lora_cfg)
    tokens = 100
    full = step_flops(full_stats, {"thinker": [tokens]}, full_cfg)
    lora = step_flops(lora_stats, {"thinker": [tokens]}, lora_cfg)
    base, adapters = full_stats.slots["thinker"].matmul_params, lora_stats.slots["thinker"].trainable_matmul
    assert adapters == lora_stats.slots["thinker"].trainable > 0
    # full: 6 N T; LoRA: forward and activation gradients over N + adapters, weight gradients of the adapters
    assert full - lora == 2 * base * tokens - 6 * adapters * tokens  # measured: exact


def _tensors(path) -> dict[str, torch.Tensor]:
    """Every model tensor of a checkpoint (file or sharded folder), assembled."""
    reader = open_checkpoint(path)
    out = {n: torch.zeros(s.numel, dtype=s.dtype) for n, s in reader.tensors().items()}

    def sink(name, offset, piece):
        out[name][offset:offset + piece.numel()] = piece

    reader.stream(sink)
    return {n: t.view(reader.tensors()[n].shape) for n, t in out.items()}


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory) -> str:
    """A plain (no-LoRA) smoke model's weights, the base every LoRA run starts from."""
    folder = tmp_path_factory.mktemp("base")
    torch.manual_seed(7)
    model = OmniModel(compose_config(["recipe=smoke"]))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    return str(folder)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["auto", "deepspeed_zero1", "deepspeed_zero2", "deepspeed_zero3"])
def test_lora_trains_only_adapters_and_exports_merged(strategy, base_weights, demo_dir, tmp_path, capsys):
    run = tmp_path / "run"
    extra = ("strategy.param_persistence_threshold=0",) if strategy == "deepspeed_zero3" else ()
    overrides = smoke_overrides(
        demo_dir, run, *LORA, FROZEN, f"init_from={base_weights}", f"strategy={strategy}", *extra,
        "trainer.max_steps=2", "trainer.log_every_n_steps=1", "trainer.val_check_interval=2",
        "trainer.limit_val_batches=1", "checkpoint.every_n_steps=2", "optim.lr=0.01", "optim.warmup_steps=0",
    )
    assert main(["train", *overrides]) == 0, capsys.readouterr().err[-3000:]
    rows = (run / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [float(r.split(",")[header.index("train/loss")]) for r in rows[1:]
              if r.split(",")[header.index("train/loss")]]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses), losses

    ckpt = run / "checkpoints" / "last.ckpt"
    trained = _tensors(ckpt)
    from safetensors.torch import load_file

    base = load_file(f"{base_weights}/model.safetensors")
    adapters = [n for n in trained if is_adapter(n)]
    cfg = compose_config(overrides)
    # A and B of the 7 default targets in every block of the thinker and the talker
    assert len(adapters) == 2 * 7 * (cfg.thinker.layers + cfg.talker.layers)
    assert set(trained) - set(adapters) == set(base)
    changed = [n for n in base if not torch.equal(trained[n], base[n].to(trained[n].dtype))]
    assert not changed, f"base weights changed under LoRA: {changed[:5]}"
    assert all(trained[n].abs().sum() > 0 for n in adapters if n.endswith(".lora.B"))  # B trained from 0

    # the adapter forward (the checkpoint loaded into a LoRA model) vs the merged bundle
    adapted = OmniModel(cfg).eval()
    adapted.load_state_dict(trained, strict=True)
    batch = next(iter(make_pipeline(cfg, "val", adapted.tokenizer.special_id("pad"))))
    want = model_outputs(adapted, batch)
    merged, merged_cfg = load_bundle(export_bundle(ckpt, tmp_path / "bundle"))
    assert not merged_cfg.lora.slots and not any("lora" in n for n in merged.state_dict())
    # every adapted weight in the bundle is the base the run started from + alpha/rank * B @ A
    # (the update is about 1e-2 here: a merge that drops or misscales it is far off)
    plain, scale = merged.state_dict(), cfg.lora.alpha / cfg.lora.rank
    for layer in sorted(n[: -len(".lora.A")] for n in adapters if n.endswith(".lora.A")):
        weight = f"{layer}.weight"
        update = scale * trained[f"{layer}.lora.B"] @ trained[f"{layer}.lora.A"]
        gap = (plain[weight] - (base[weight] + update)).abs().max().item()
        assert gap <= 7.5e-8, f"{weight} is {gap} off base + alpha/rank * B @ A"  # measured 7.5e-9
    got = model_outputs(merged, batch)
    for name in want:  # measured at most 1.2e-7 (text, ZeRO-3)
        diff = (got[name] - want[name]).abs().max().item()
        assert diff <= 1e-6, f"merged export's {name} differs from the adapter forward by {diff}"

    # adapter only: the base weights + the adapter file rebuild the trained model
    assert main(["export", str(ckpt), str(tmp_path / "adapter"), "--adapter-only"]) == 0
    meta = json.loads((tmp_path / "adapter" / "adapter.json").read_text())
    assert meta["lora"]["rank"] == 4 and meta["tensors"] == len(adapters)
    rebuilt = OmniModel(cfg).eval()
    rebuilt.load_state_dict(base, strict=False)
    assert load_adapter(rebuilt, tmp_path / "adapter") == len(adapters)
    again = model_outputs(rebuilt, batch)
    for name in want:  # measured: bit-identical
        assert torch.equal(again[name], want[name]), name


@pytest.mark.slow
def test_lora_on_expert_weights_trains_them_and_merges(demo_dir, tmp_path, capsys):
    """The Qwen3 MoE Thinker under ZeRO-3 (adapters partitioned like the rest): LoRA on
    attention and on every expert's 3-D weights; 2 steps change only the adapters (the
    router and the experts' base weights frozen by default), and the merged export computes
    what the adapted model computes."""
    run = tmp_path / "run"
    overrides = smoke_overrides(
        demo_dir, run, "thinker=qwen3_moe", "lora.slots=[thinker]", "lora.targets=[q_proj,gate_up_proj,down_proj]",
        "lora.rank=8", "lora.alpha=16", "optim.freeze=[audio_encoder,vision_encoder,talker,dit]",
        "strategy=deepspeed_zero3", "strategy.param_persistence_threshold=0", "trainer.max_steps=2",
        "trainer.val_check_interval=2", "trainer.limit_val_batches=1", "checkpoint.every_n_steps=2",
        "optim.lr=0.01", "optim.warmup_steps=0", "seed=3")
    assert main(["train", *overrides]) == 0, capsys.readouterr().err[-3000:]
    ckpt = run / "checkpoints" / "last.ckpt"
    trained = _tensors(ckpt)
    cfg = compose_config(overrides)
    torch.manual_seed(cfg.seed)
    start = OmniModel(cfg).state_dict()  # the run's initial weights (same seed, same build order)
    expert_adapters = [n for n in trained if is_adapter(n) and ".experts.lora." in n]
    sparse = cfg.thinker.layers - len(cfg.thinker.mlp_only_layers)
    assert len(expert_adapters) == 4 * sparse  # A and B of gate_up_proj and down_proj per MoE layer
    assert all(trained[n].abs().sum() > 0 for n in expert_adapters if n.endswith(".B"))  # trained from 0
    changed = [n for n in start if not is_adapter(n) and not torch.equal(trained[n], start[n].to(trained[n].dtype))]
    assert changed == []  # the router (mlp.gate), the experts and everything else as they were
    adapted = OmniModel(cfg).eval()
    adapted.load_state_dict(trained, strict=True)
    batch = next(iter(make_pipeline(cfg, "val", adapted.tokenizer.special_id("pad"))))
    want = model_outputs(adapted, batch)
    merged, _ = load_bundle(export_bundle(ckpt, tmp_path / "bundle"))
    got = model_outputs(merged, batch)
    for name in want:
        diff = (got[name] - want[name]).abs().max().item()
        assert diff <= 1e-5, f"merged export's {name} differs from the adapter forward by {diff}"
