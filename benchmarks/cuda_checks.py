"""Issue 12's checks that need a GPU, in one short run:

1. FlashAttention varlen with grouped K/V heads read natively equals the dense document
   mask with K/V repeated (bf16, forward and gradients), packed rows with padding.
2. One training step (forward + backward, after a warm-up) of the smoke model, and of the
   same with the Qwen2.5-Omni plugins at size=tiny, under
   ``torch.cuda.set_sync_debug_mode("warn")``: every host sync is listed with the line
   that caused it.

    .venv/bin/python benchmarks/cuda_checks.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers, from any folder

def varlen_gqa_check(device: torch.device) -> dict:
    from omnitrain.nn.attention import Attention
    from omnitrain.nn.masks import doc_causal_mask
    from omnitrain.nn.varlen import DocAttention, doc_runs, varlen_available

    torch.manual_seed(0)
    attn = Attention(896, num_heads=14, num_kv_heads=2, qkv_bias=True).to(device)
    docs = torch.zeros(2, 512, dtype=torch.long)
    docs[0, :200], docs[0, 200:512] = 1, 2
    docs[1, :300], docs[1, 300:450] = 1, 2  # 62 padding tokens
    x = torch.randn(2, 512, 896, device=device, requires_grad=True)
    docs_d = docs.to(device)
    real = docs_d != 0
    with torch.autocast(device.type, dtype=torch.bfloat16):
        plan = DocAttention.build(docs_d, "varlen", doc_runs(docs))
        got = attn(x, plan)
        # the reference: dense mask, K/V repeated (masked SDPA on CUDA repeats)
        ref = attn(x, doc_causal_mask(docs_d))
    out_diff = (got[real].float() - ref[real].float()).abs().max().item()
    g_got = torch.autograd.grad(got[real].float().square().mean(), attn.k_proj.weight)[0]
    g_ref = torch.autograd.grad(ref[real].float().square().mean(), attn.k_proj.weight)[0]
    rel = ((g_got - g_ref).norm() / g_ref.norm()).item()
    return {"varlen_available": varlen_available(), "emulated": plan.emulate, "max_abs_diff": out_diff,
            "k_grad_rel_diff": rel, "ok": out_diff < 3e-2 and rel < 3e-2}


def sync_step(overrides: list[str], demo: Path, run: Path, device: torch.device) -> dict:
    from omnitrain.data.pipeline import make_pipeline
    from omnitrain.model.omni_model import OmniModel
    from omnitrain.run_config import compose_config
    from tests.helpers import smoke_overrides

    cfg = compose_config(smoke_overrides(demo, run, *overrides))
    torch.manual_seed(0)
    model = OmniModel(cfg).to(device)
    batch = next(iter(make_pipeline(cfg, "train", model.tokenizer.special_id("pad"))))
    import lightning.pytorch.utilities as lu

    batch = lu.move_data_to_device(batch, device)
    cuda = device.type == "cuda"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
        model(batch)["loss"].backward()  # warm-up
    if cuda:
        torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                model(batch)["loss"].backward()
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    syncs: dict[str, int] = {}
    for w in caught:
        if "synchroniz" in str(w.message):
            where = f"{w.filename}:{w.lineno}"
            syncs[where] = syncs.get(where, 0) + 1
    return {"overrides": overrides, "syncs": sum(syncs.values()), "where": syncs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", default=None)
    p.add_argument("--device", default="cuda", help="cpu: a dry run of the script (no sync debug mode there)")
    args = p.parse_args()
    device = torch.device(args.device)
    result: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "torch": torch.__version__}
    try:
        result["varlen_gqa"] = varlen_gqa_check(device)
    except Exception as exc:  # report and go on: the other checks still tell something
        result["varlen_gqa"] = {"error": repr(exc)[:2000], "ok": False}
    print("varlen GQA:", result["varlen_gqa"], flush=True)
    # the demo shards, as tests/conftest.py makes them
    from omnitrain.data.build.demo import make_demo
    from omnitrain.registry import build
    from omnitrain.run_config import compose_config
    from tests.helpers import SMALL_DEMO

    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(tmp) / "demo"
        demo.mkdir()
        make_demo(demo, build("codec", compose_config(["recipe=smoke"]).codec), SMALL_DEMO, seed=0)
        result["sync_steps"] = []
        for overrides in ([], ["audio_encoder=whisper_audio", "vision_encoder=qwen_vit", "talker=dual_track",
                               "dit=flow_dit", "size=tiny"]):
            try:
                r = sync_step(overrides, demo, Path(tmp) / "run", device)
            except Exception as exc:
                r = {"overrides": overrides, "error": repr(exc)[:2000]}
            print("sync step:", r, flush=True)
            result["sync_steps"].append(r)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
