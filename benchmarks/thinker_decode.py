"""Time per new token of the Thinker's generation with its key/value cache, by context length.

The prompt (``context`` tokens) is prefilled once through ``Thinker.step``; then each new
token is one ``step`` of one token against the cache (what ``ThinkerDecoder.feed`` runs).
Goal (issue 12): flat in the context, within 1.5x from 64 to 1,024 tokens. For reference,
the same with transformers' Qwen2ForCausalLM and its cache (same weights), and without
any cache (the whole sequence re-run per token), interleaved in this process.

    .venv/bin/python benchmarks/thinker_decode.py --preset cpu
    .venv/bin/python benchmarks/thinker_decode.py --preset qwen05b --device cuda --dtype bf16
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from thinker_step import PRESETS, build_omnitrain, build_transformers, sync  # noqa: E402

from omnitrain.nn.kv_cache import KVCache  # noqa: E402


def positions(start: int, n: int, device) -> torch.Tensor:
    return torch.arange(start, start + n, device=device).view(1, 1, n)


@torch.no_grad()
def omnitrain_per_token(model, prompt: torch.Tensor, new: int) -> list[float]:
    cache, device = KVCache(), prompt.device
    hidden = model.step(model.embed(prompt), positions(0, prompt.shape[1], device), cache)
    token = model.logits(hidden[:, -1:]).argmax(-1)
    times, tokens = [], []
    for i in range(new):
        sync(device)
        t0 = time.perf_counter()
        hidden = model.step(model.embed(token), positions(prompt.shape[1] + i, 1, device), cache)
        token = model.logits(hidden[:, -1:]).argmax(-1)
        sync(device)
        times.append(time.perf_counter() - t0)
        tokens.append(int(token))
    return times, tokens


@torch.no_grad()
def transformers_per_token(model, prompt: torch.Tensor, new: int) -> list[float]:
    out = model(input_ids=prompt, use_cache=True)
    past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
    times, tokens = [], []
    for _ in range(new):
        sync(prompt.device)
        t0 = time.perf_counter()
        out = model(input_ids=token, past_key_values=past, use_cache=True)
        past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        sync(prompt.device)
        times.append(time.perf_counter() - t0)
        tokens.append(int(token))
    return times, tokens


@torch.no_grad()
def no_cache_per_token(model, prompt: torch.Tensor, new: int) -> list[float]:
    """The whole sequence re-run for each new token (what generation costs without a cache)."""
    seq, times = prompt, []
    for _ in range(new):
        sync(prompt.device)
        t0 = time.perf_counter()
        hidden = model.step(model.embed(seq), positions(0, seq.shape[1], seq.device), KVCache())
        token = model.logits(hidden[:, -1:]).argmax(-1)
        sync(prompt.device)
        times.append(time.perf_counter() - t0)
        seq = torch.cat([seq, token], 1)
    return times


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default=None, help="weights' dtype (default bf16 on CUDA)")
    p.add_argument("--contexts", default="64,128,256,512,1024")
    p.add_argument("--new", type=int, default=16, help="new tokens timed per context (median)")
    p.add_argument("--no-reference", action="store_true", help="omnitrain only (no transformers, no re-run)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype or ("bf16" if device.type == "cuda" else "fp32")]
    shape = dict(PRESETS[args.preset])
    ours = build_omnitrain(shape, "auto", torch.device("cpu")).eval()  # fp32: transformers copies it
    theirs = None if args.no_reference else build_transformers(shape, ours, device).to(dtype).eval()
    ours = ours.to(device=device, dtype=dtype)
    contexts = [int(c) for c in args.contexts.split(",")]
    g = torch.Generator().manual_seed(0)
    rows = {}
    for ctx in contexts:
        prompt = torch.randint(0, shape["vocab"], (1, ctx), generator=g).to(device)
        omnitrain_per_token(ours, prompt, 8)  # warm-up
        times, tokens = omnitrain_per_token(ours, prompt, args.new)
        row = {"omnitrain_ms": 1e3 * statistics.median(times)}
        if theirs is not None:
            transformers_per_token(theirs, prompt, 8)
            ref_times, ref_tokens = transformers_per_token(theirs, prompt, args.new)
            row["transformers_ms"] = 1e3 * statistics.median(ref_times)
            # greedy tokens agree (bf16 may part ways after a near-tie)
            row["same_greedy_tokens"] = sum(a == b for a, b in zip(tokens, ref_tokens)) / len(tokens)
            row["no_cache_ms"] = 1e3 * statistics.median(no_cache_per_token(ours, prompt, min(4, args.new)))
        rows[ctx] = row
    first, last = rows[contexts[0]]["omnitrain_ms"], rows[contexts[-1]]["omnitrain_ms"]
    result = {"shape": shape, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
              f"cpu ({args.threads} threads)", "dtype": str(dtype), "new_tokens": args.new, "per_token": rows,
              "growth": last / first, "flat_within_1_5x": last / first <= 1.5}
    print(f"# Thinker decoding with a KV cache, {result['device']}, {dtype}: {shape['hidden']} wide, "
          f"{shape['layers']} layers, {shape['vocab']} vocab; median of {args.new} new tokens per context")
    print("| context | omnitrain ms/token | transformers ms/token | no cache ms/token | same greedy tokens |")
    print("|---|---|---|---|---|")
    for ctx, r in rows.items():
        ref = [f"{r[k]:.2f}" if k in r else "-" for k in ("transformers_ms", "no_cache_ms", "same_greedy_tokens")]
        print(f"| {ctx} | {r['omnitrain_ms']:.2f} | {ref[0]} | {ref[1]} | {ref[2]} |")
    print(f"omnitrain ms/token at {contexts[-1]} / at {contexts[0]}: {result['growth']:.2f}x "
          f"({'flat, within 1.5x' if result['flat_within_1_5x'] else 'NOT within 1.5x'})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
