"""Batched eval generation vs one prompt at a time: the Thinker's replies to the same
prompts through the one ``Replier`` with ``batch_size`` 1 and N (what ``omnitrain eval
--batch N`` does), side by side in one process, alternating rounds so a busy machine
slows both alike. Random weights, greedy: every reply runs to ``--new-tokens`` unless the
model says its end token, and the batched replies must equal the single ones token for
token (checked, reported). The Talker, DiT and vocoder speak each reply alone either way,
so this times the text part.

    .venv/bin/python benchmarks/eval_batch.py                      # the demo size, CPU
    .venv/bin/python benchmarks/eval_batch.py --size omni05b --device cuda --dtype bf16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import torch

from omnitrain.data.sample_builder import SampleBuilder
from omnitrain.inference.prompts import user_turn
from omnitrain.inference.replier import Replier
from omnitrain.model.omni_model import OmniModel
from omnitrain.run_config import compose_config


def prompts(n: int) -> list[dict]:
    """Questions of different lengths (the batch is padded to the longest)."""
    return [user_turn("Say " + " ".join(str((i * 7 + k) % 10) for k in range(1 + i % 9)) + ".") for i in range(n)]


def timed(replier: Replier, examples, device: torch.device) -> tuple[float, list[list[int]]]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    decoders = replier.reply_texts(examples)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0, [list(d.new) for d in decoders]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="demo")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    args = p.parse_args()
    device = torch.device(args.device)
    cfg = compose_config([f"size={args.size}"])
    settings = dataclasses.replace(cfg.generate, max_new_tokens=args.new_tokens)
    torch.manual_seed(0)
    model = OmniModel(cfg).eval()
    if args.dtype == "bf16":
        model = model.to(torch.bfloat16)
    model = model.to(device)
    builder = SampleBuilder.from_config(cfg)
    repliers = {b: Replier(model, settings, builder, batch_size=b) for b in (1, args.batch)}
    examples = [repliers[1].prompt(c) for c in prompts(args.prompts)]
    timed(repliers[args.batch], examples[: args.batch], device)  # warm-up
    times: dict[int, list[float]] = {1: [], args.batch: []}
    tokens: dict[int, list[list[int]]] = {}
    for _ in range(args.rounds):
        for b, replier in repliers.items():
            seconds, tokens[b] = timed(replier, examples, device)
            times[b].append(seconds)
    new = sum(len(t) for t in tokens[1])
    one, many = statistics.median(times[1]), statistics.median(times[args.batch])
    result = {
        "size": args.size, "device": str(device), "dtype": args.dtype, "prompts": args.prompts,
        "new_tokens": new, "threads": torch.get_num_threads(),
        "one_at_a_time_s": round(one, 3), f"batch_{args.batch}_s": round(many, 3),
        "tokens_per_s": {"1": round(new / one, 1), str(args.batch): round(new / many, 1)},
        "speedup": round(one / many, 2), "same_replies": tokens[1] == tokens[args.batch],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
