"""Time per new token of the Thinker's generation with its key/value cache, by context length.

The prompt (``context`` tokens) is prefilled once through ``Thinker.step``; then each new
token is one ``step`` of one token against the cache (what ``ThinkerDecoder.feed`` runs).
Goal (issue 12): flat in the context, within 1.5x from 64 to 1,024 tokens. For reference,
the same with transformers' Qwen2ForCausalLM and its cache (same weights), and without
any cache (the whole sequence re-run per token). Every context's sequence is decoded
side by side, one token of each per round, so a busy machine slows them alike.

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


class Decoder:
    """One sequence being decoded greedily; ``step()`` adds one token and returns the
    seconds it took. ``kind``: omnitrain (``Thinker.step`` + ``KVCache``), transformers
    (its own cache) or no_cache (omnitrain re-running the whole sequence)."""

    def __init__(self, kind: str, model, prompt: torch.Tensor) -> None:
        self.kind, self.model, self.device, self.tokens = kind, model, prompt.device, []
        self.length = prompt.shape[1]
        with torch.no_grad():
            if kind == "transformers":
                out = model(input_ids=prompt, use_cache=True)
                self.past, self.token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            else:
                self.cache, self.seq = KVCache(), prompt
                hidden = model.step(model.embed(prompt), positions(0, self.length, self.device), self.cache)
                self.token = model.logits(hidden[:, -1:]).argmax(-1)

    @torch.no_grad()
    def step(self) -> float:
        m = self.model
        sync(self.device)
        t0 = time.perf_counter()
        if self.kind == "transformers":
            out = m(input_ids=self.token, past_key_values=self.past, use_cache=True)
            self.past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        elif self.kind == "omnitrain":
            hidden = m.step(m.embed(self.token), positions(self.length, 1, self.device), self.cache)
            token = m.logits(hidden[:, -1:]).argmax(-1)
        else:
            self.seq = torch.cat([self.seq, self.token], 1)
            hidden = m.step(m.embed(self.seq), positions(0, self.seq.shape[1], self.device), KVCache())
            token = m.logits(hidden[:, -1:]).argmax(-1)
        sync(self.device)
        elapsed = time.perf_counter() - t0
        self.length += 1
        self.token = token
        self.tokens.append(int(token))
        return elapsed


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default=None, help="weights' dtype (default bf16 on CUDA)")
    p.add_argument("--contexts", default="64,128,256,512,1024")
    p.add_argument("--new", type=int, default=16, help="new tokens timed per context (median)")
    p.add_argument("--warmup", type=int, default=4, help="new tokens first decoded untimed")
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
    kinds = {"omnitrain": ours} if theirs is None else {"omnitrain": ours, "transformers": theirs, "no_cache": ours}
    decoders = {}
    for ctx in contexts:
        prompt = torch.randint(0, shape["vocab"], (1, ctx), generator=g).to(device)
        for kind, model in kinds.items():
            decoders[ctx, kind] = Decoder(kind, model, prompt)
    # one token of every (context, kind) per round: load on the machine hits all alike
    times = {key: [] for key in decoders}
    for i in range(args.warmup + args.new):
        for key, dec in decoders.items():
            if key[1] == "no_cache" and i >= args.warmup + min(4, args.new):
                continue  # the whole sequence per token: a few suffice
            elapsed = dec.step()
            if i >= args.warmup:
                times[key].append(elapsed)
    rows = {}
    for ctx in contexts:
        row = {f"{kind}_ms": 1e3 * statistics.median(times[ctx, kind]) for kind in kinds}
        if theirs is not None:  # greedy tokens agree (bf16 may part ways after a near-tie)
            ours_t, ref_t = decoders[ctx, "omnitrain"].tokens, decoders[ctx, "transformers"].tokens
            row["same_greedy_tokens"] = sum(a == b for a, b in zip(ours_t, ref_t)) / len(ours_t)
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
