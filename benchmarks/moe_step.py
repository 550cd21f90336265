"""A MoE Thinker training step (forward + backward), omnitrain's ``qwen3_moe`` with grouped
experts and with the reference loop, against transformers' ``Qwen3OmniMoeThinkerTextModel``
(its default experts implementation), same weights, a CPU-sized proxy of Qwen3-Omni's
Thinker (128-d heads, many small experts, top-k routing). Rounds alternate the three so a
busy machine slows them alike; tokens/s is the median; peak is the bytes of tensors the
step creates (counted at torch's dispatcher: activations, gradients, temporaries).

    .venv/bin/python benchmarks/moe_step.py
    .venv/bin/python benchmarks/moe_step.py --experts 32 --top-k 4 --tokens 1024
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from omnitrain.training.performance.live_bytes import LiveBytes
from omnitrain_plugins.mrope import MRope, MRopeConfig
from omnitrain_plugins.qwen3_omni.moe_thinker import Qwen3MoeThinker, Qwen3MoeThinkerConfig


def build(args):
    from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import (
        Qwen3OmniMoeTextConfig,
    )
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
        Qwen3OmniMoeThinkerTextModel,
    )

    third = args.head_dim * 5 // 32  # the release's [24, 20, 20] at head_dim 128
    section = [args.head_dim // 2 - 2 * third, third, third]
    ref_cfg = Qwen3OmniMoeTextConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 3, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, head_dim=args.head_dim,
        moe_intermediate_size=args.moe_ffn, num_experts=args.experts, num_experts_per_tok=args.top_k,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": section})
    ref_cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    reference = Qwen3OmniMoeThinkerTextModel(ref_cfg)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_(0, 0.02)
    models = {"transformers": reference}
    for impl in ("grouped", "loop"):
        cfg = Qwen3MoeThinkerConfig(hidden_size=args.hidden, layers=args.layers, heads=args.heads,
                                    kv_heads=args.kv_heads, head_dim=args.head_dim, ffn_dim=args.hidden * 3,
                                    moe_ffn_dim=args.moe_ffn, experts=args.experts, top_k=args.top_k,
                                    experts_impl=impl, attention="dense")
        ours = Qwen3MoeThinker(cfg, args.vocab, MRope(MRopeConfig(theta=1e6, mrope_section=section,
                                                                  mrope_interleaved=True)))
        ours.load_state_dict(reference.state_dict(), strict=False)
        models[f"omnitrain ({impl})"] = ours
    return models


def step(name: str, model, ids: torch.Tensor, positions: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    if name == "transformers":
        hidden = model(input_ids=ids, position_ids=positions).last_hidden_state
    else:
        hidden = model(model.embed(ids), positions, torch.ones_like(ids)).hidden
    hidden.float().pow(2).mean().backward()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--moe-ffn", type=int, default=64)
    p.add_argument("--experts", type=int, default=32)
    p.add_argument("--top-k", type=int, default=4)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    models = build(args)
    ids = torch.randint(0, args.vocab, (1, args.tokens), generator=torch.Generator().manual_seed(1))
    positions = torch.arange(args.tokens).view(1, 1, -1).expand(3, 1, -1)
    times: dict[str, list[float]] = {n: [] for n in models}
    peaks: dict[str, int] = {}
    for name, model in models.items():  # warm-up, and the peak of one step
        step(name, model, ids, positions)
        with LiveBytes() as track:
            step(name, model, ids, positions)
        peaks[name] = track.peak
    for _ in range(args.rounds):
        for name, model in models.items():
            t0 = time.perf_counter()
            step(name, model, ids, positions)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["transformers"])
    print(json.dumps({"config": vars(args), "threads": torch.get_num_threads(), "results": {
        name: {"tokens_per_s": round(args.tokens / statistics.median(t), 1),
               "vs_transformers": round(base / statistics.median(t), 2),
               "peak_MiB": round(peaks[name] / 2**20, 1)} for name, t in times.items()}}, indent=2))


if __name__ == "__main__":
    main()
