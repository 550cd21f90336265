"""Strategy configs: one override each, the DeepSpeed JSON they generate, and the bad
combinations that must fail before any data is read or model built."""

from __future__ import annotations

import pytest

from omnitrain.cli import main
from omnitrain.config.validate import ConfigError
from omnitrain.parallel import strategy_for
from omnitrain.parallel.deepspeed.config import check_deepspeed_config, deepspeed_config
from omnitrain.parallel.global_batch import per_rank_batch
from omnitrain.run_config import compose_config
from omnitrain.training.run import prepare
from tests.helpers import smoke_overrides


@pytest.mark.parametrize("strategy,stage", [("deepspeed_zero1", 1), ("deepspeed_zero2", 2),
                                            ("deepspeed_zero3", 3), ("deepspeed_zero3_offload", 3)])
def test_each_zero_stage_is_one_override_with_a_json_deepspeed_accepts(strategy, stage):
    cfg = compose_config([f"strategy={strategy}", "trainer.precision=bf16-mixed", "data.batch_size=3",
                          "trainer.gradient_clip_val=0.5"])
    ds = deepspeed_config(strategy_for(cfg).options, cfg)
    assert ds["zero_optimization"]["stage"] == stage
    assert ds["bf16"] == {"enabled": True} and "fp16" not in ds
    assert ds["train_micro_batch_size_per_gpu"] == 3 and ds["gradient_clipping"] == 0.5
    assert "gradient_accumulation_steps" not in ds  # Lightning sets it from accumulate_grad_batches
    assert ("offload_optimizer" in ds["zero_optimization"]) == strategy.endswith("offload")
    assert ("offload_param" in ds["zero_optimization"]) == strategy.endswith("offload")
    assert ("stage3_prefetch_bucket_size" in ds["zero_optimization"]) == (stage == 3)
    assert check_deepspeed_config(ds) == []


def test_fp16_json_has_dynamic_loss_scaling():
    cfg = compose_config(["strategy=deepspeed_zero2", "trainer=gpu", "trainer.precision=16-mixed"])
    ds = deepspeed_config(strategy_for(cfg).options, cfg)
    assert ds["fp16"]["enabled"] and ds["fp16"]["loss_scale"] == 0 and "bf16" not in ds


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["trainer.precision=16-mixed"], "(fp16) cannot run on the CPU"),
        (["strategy=deepspeed_zero2", "trainer.precision=16-true"], "(fp16) cannot run on the CPU"),
        (["strategy=deepspeed_zero3", "trainer.precision=64-true"], "DeepSpeed does not support"),
        (["strategy=deepspeed_zero2", "strategy.offload_parameters=true"], "needs ZeRO stage 3"),
        (["strategy=deepspeed_zero3", "strategy.stage=4"], "must be 1, 2 or 3"),
        (["strategy=deepspeed_zero3", "strategy.reduce_bucket_size=-5"], "reduce_bucket_size: Input should be greater than 0"),
        (["strategy=deepspeed_zero3", "+strategy.bucket=1"], "bucket"),
        (["strategy=deepspeed_zero2", "+trainer.gradient_clip_algorithm=value"], "clips gradients by norm only"),
        (["strategy=fsdp", "strategy.state_dict_type=full"], "use strategy.state_dict_type=sharded"),
        (["strategy=fsdp", "+strategy.wrap=[nope.Block]"], "wrap"),
        (["strategy=zero9"], "Could not find 'strategy/zero9'"),
        (["data.global_batch_size=10", "trainer.devices=4"], "does not divide over 4 processes"),
    ],
)
def test_impossible_combinations_fail_at_compose_time(overrides, needle):
    with pytest.raises(ConfigError) as err:
        compose_config(overrides)
    assert needle in str(err.value)


def test_global_batch_sets_the_per_process_batch():
    assert per_rank_batch(32, 4, 2) == 4
    with pytest.raises(ConfigError, match=r"multiple of 6 \(e.g. 30 or 36\)"):
        per_rank_batch(32, 3, 2)


def test_world_size_from_the_launcher_must_divide_the_global_batch(demo_dir, tmp_path, monkeypatch):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, "data.global_batch_size=8"))
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert prepare(cfg).cfg.data.batch_size == 2
    monkeypatch.setenv("WORLD_SIZE", "3")  # e.g. torchrun --nproc_per_node 3
    with pytest.raises(ConfigError, match="does not divide over 3 processes"):
        prepare(cfg)


def test_cli_reports_a_batch_that_does_not_divide_before_any_work(demo_dir, tmp_path, capsys):
    code = main(["train", *smoke_overrides(demo_dir, tmp_path, "data.global_batch_size=6", "trainer.devices=4")])
    assert code == 2 and "does not divide over 4 processes" in capsys.readouterr().err
    assert not (tmp_path / "csv").exists()


def test_fsdp_shards_the_blocks_every_plugin_declares():
    """No YAML list: each plugin's ``block_types`` are its FSDP units (and recomputed)."""
    from omnitrain.nn import TransformerBlock
    from omnitrain.nn.decoder import DecoderLayer
    from omnitrain_plugins.qwen_omni.dual_track_talker import DualTrackTalker
    from omnitrain_plugins.qwen_omni.flow_dit import DiTBlock
    from omnitrain_plugins.qwen_omni.qwen_vit import VisionBlock
    from omnitrain_plugins.qwen_omni.whisper_audio import EncoderLayer

    cfg = compose_config(["strategy=fsdp", "strategy.activation_checkpointing=true", "audio_encoder=whisper_audio",
                          "vision_encoder=qwen_vit", "talker=dual_track", "dit=flow_dit"])
    lightning = strategy_for(cfg).lightning()
    units = {EncoderLayer, VisionBlock, TransformerBlock, DecoderLayer, DiTBlock}
    assert DualTrackTalker.block_types == (DecoderLayer,)
    assert set(lightning.kwargs["auto_wrap_policy"]._module_classes) == units
    assert set(lightning._activation_checkpointing_kwargs["auto_wrap_policy"]._module_classes) == units
