"""Model FLOPs per step: 6N per real token plus attention, checked against torch's own
FLOP counter, and counted only where backward actually runs."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from omnitrain.data.pipeline import make_pipeline
from omnitrain.model.lora import freeze_for_lora
from omnitrain.model.meta import meta_model
from omnitrain.model.omni_model import OmniModel
from omnitrain.run_config import compose_config
from omnitrain.slots import ThinkerOutput
from omnitrain.training.performance.flops import count_sizes, sequence_lengths, step_flops
from omnitrain.training.performance.model_stats import model_stats
from tests.helpers import smoke_overrides

THINKER = ["recipe=smoke", "position=rope1d", "thinker.hidden_size=64", "thinker.layers=2",
           "thinker.heads=4", "thinker.kv_heads=2", "thinker.ffn_dim=128"]


def thinker_flops(cfg, length: int = 96):
    """(predicted FLOPs of one Thinker step on ``length`` tokens, torch's count of the same
    forward and backward, the model's slot statistics)."""
    torch.manual_seed(0)
    model = OmniModel(cfg)
    freeze_for_lora(model, cfg.lora)  # as training does: under LoRA only the adapters get weight gradients
    ids = torch.randint(0, 256, (1, length))
    # the math SDPA kernel runs attention as counted matmuls (the fused CPU kernel is not counted)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        hidden = model.thinker(model.thinker.embed(ids), torch.arange(length)[None, None],
                               torch.ones(1, length, dtype=torch.long))
        hidden = ThinkerOutput.of(hidden).hidden  # a Thinker may return its outputs as one object
        model.thinker.logits(hidden).sum().backward()
    stats = model_stats(model, cfg)
    return step_flops(stats, {"thinker": [length]}, cfg), counter.get_total_flops(), stats


def test_thinker_flops_match_torchs_flop_counter():
    predicted, counted, _ = thinker_flops(compose_config(THINKER))
    assert predicted == pytest.approx(counted, rel=0.02)  # measured 5.0e-3


def test_frozen_slots_cost_only_the_passes_that_run():
    lengths = {"audio_encoder": [50], "thinker": [200]}
    full_cfg = compose_config(["recipe=smoke"])
    stats = model_stats(meta_model(full_cfg), full_cfg)
    full = step_flops(stats, lengths, full_cfg)
    audio_only = step_flops(stats, {"audio_encoder": [50]}, full_cfg)
    frozen_audio = compose_config(["recipe=smoke", "optim.freeze=[audio_encoder]"])
    # a frozen encoder with nothing trainable upstream: forward only, a third of the cost
    assert step_flops(stats, lengths, frozen_audio) == full - audio_only * 2 / 3  # measured: exact
    frozen_thinker = compose_config(["recipe=smoke", "optim.freeze=[thinker]"])
    thinker_only = step_flops(stats, {"thinker": [200]}, full_cfg)
    # a frozen Thinker behind trainable encoders: forward + activation gradients, no weight gradients
    thinker_matmul = 2.0 * stats.slots["thinker"].matmul_params * 200
    assert step_flops(stats, lengths, frozen_thinker) == full - thinker_matmul  # measured: exact
    assert thinker_matmul < thinker_only


def test_sequence_lengths_are_the_real_unpadded_tokens(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path))
    batch = next(iter(make_pipeline(cfg, "train", 256)))
    lengths = sequence_lengths(batch, meta_model(cfg).talker, 2)
    assert sum(lengths["thinker"]) == batch.num_tokens < batch.input_ids.numel()
    assert len(lengths["thinker"]) == batch.input_ids.shape[0]  # one document per row here
    assert len(lengths["talker"]) == len(lengths["dit"]) == batch.speech_rows.numel()
    replies, codes = batch.reply_mask.sum(1), batch.codec_mask.sum(1)
    assert lengths["talker"] == (replies + codes + 1).tolist()  # the prefix Talker: reply, then bos + codes
    dual = compose_config(smoke_overrides(demo_dir, tmp_path, "talker=dual_track"))
    with_prompt = sequence_lengths(batch, meta_model(dual).talker, 2)["talker"]
    assert with_prompt == (batch.prompt_lengths() + codes + 2).tolist()  # it also reads the prompt


def test_collate_counts_the_sizes_the_tensors_hold(demo_dir, tmp_path):
    """The meters read ``batch.sizes`` (counted in the data workers) instead of the device
    tensors: they must agree with what the tensors say, packed rows included."""
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path, "data.batching=tokens", "data.pack_length=512", "data.max_tokens=512",
                                         "data.rows_per_batch=2"))
    batches = iter(make_pipeline(cfg, "train", 256))
    batch = next(b for b in batches if b.speech_rows.numel() and len(b.sizes.documents) > b.input_ids.shape[0])
    assert batch.sizes == count_sizes(batch)
    assert batch.num_tokens == int((batch.doc_ids != 0).sum())
    # the meters read nothing off the device: a batch whose tensors hold no data gives the same
    meta = batch.to("meta")
    talker = meta_model(cfg).talker
    assert sequence_lengths(meta, talker, 2) == sequence_lengths(batch, talker, 2)
    assert meta.num_tokens == batch.num_tokens


def test_the_audio_encoder_says_the_positions_its_layers_run_on(demo_dir, tmp_path):
    """FLOPs and memory plans ask the encoder (``AudioEncoder.layer_positions``, declared in
    omnitrain/slots.py) instead of assuming Whisper's stride-2 stem."""
    from omnitrain.training.performance.activations import slot_positions

    cfg = compose_config(smoke_overrides(demo_dir, tmp_path))
    batch = next(b for b in make_pipeline(cfg, "train", 256) if b.audio_lengths.numel())
    encoder = type(meta_model(cfg).audio_encoder)
    talker = meta_model(cfg).talker
    assert sequence_lengths(batch, talker, 2, encoder)["audio_encoder"] == ((batch.audio_lengths - 1) // 2 + 1).tolist()

    class Stride4(encoder):
        @classmethod
        def layer_positions(cls, lengths):
            return (lengths + 3) // 4

    assert sequence_lengths(batch, talker, 2, Stride4)["audio_encoder"] == ((batch.audio_lengths + 3) // 4).tolist()
    assert slot_positions(batch, talker, 2, Stride4)["audio_encoder"] == int(((batch.audio_lengths + 3) // 4).sum())


def test_a_mixture_of_experts_counts_its_active_weights():
    """A stranger's top-1 MoE Thinker (``tests/contracts/stranger_plugins.py``) declares
    ``active_params``: the predicted FLOPs follow the matmuls it really runs (torch's flop
    counter), not every expert's weights (4x the MLPs')."""
    predicted, counted, stats = thinker_flops(compose_config(
        [*THINKER, "plugins=[tests.contracts.stranger_plugins]", "thinker=stranger_moe", "thinker.experts=4"]))
    assert stats.slots["thinker"].active_matmul < 0.7 * stats.slots["thinker"].matmul_params
    # measured 5.0e-3 (as the dense Thinker's); counting every expert: +128%
    assert predicted == pytest.approx(counted, rel=0.02)


def test_qwen3_moe_counts_top_k_of_its_experts():
    """Qwen3-Omni's MoE Thinker (top-2 of 4 experts, a dense layer among MoE layers): the
    predicted FLOPs are torch's count of the matmuls it runs (the experts' loop: each
    expert's Linear on its tokens), far below counting every expert."""
    predicted, counted, stats = thinker_flops(compose_config(
        [*THINKER, "thinker=qwen3_moe", "thinker.moe_ffn_dim=64", "thinker.mlp_only_layers=[1]", "thinker.layers=3",
         "thinker.experts_impl=loop"]))
    thinker = stats.slots["thinker"]
    assert thinker.active_matmul < 0.8 * thinker.matmul_params
    assert predicted == pytest.approx(counted, rel=0.02)


def test_qwen3_moe_lora_counts_expert_adapters_as_often_as_they_run():
    """LoRA on the Qwen3 MoE Thinker with adapters on each expert (top-2 of 4 run per
    position) beside one on attention only: what the expert adapters add (forward, activation
    and weight gradients) is torch's count exactly, each counted as often as it runs
    (``active_share``). Both runs share one offset from torch's count: the 6N rule's
    activation gradients below the first adapter, which autograd skips (measured 6%)."""
    runs = {}
    for targets in ("[q_proj,gate_up_proj,down_proj]", "[q_proj]"):
        runs[targets] = thinker_flops(compose_config(
            [*THINKER, "thinker=qwen3_moe", "thinker.moe_ffn_dim=64", "thinker.mlp_only_layers=[1]",
             "thinker.layers=3", "thinker.experts_impl=loop", "lora.slots=[thinker]", f"lora.targets={targets}",
             "lora.rank=8"]))
    (p_exp, c_exp, stats), (p_att, c_att, _) = runs.values()
    thinker = stats.slots["thinker"]
    assert 0 < thinker.active_trainable < thinker.trainable_matmul  # the expert adapters run for 2 of 4
    # measured: equal; counting the adapters as active as the whole slot: +32%
    assert p_exp - p_att == pytest.approx(c_exp - c_att, rel=1e-3)
