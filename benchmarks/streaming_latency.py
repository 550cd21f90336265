"""First-audio latency of streaming generation vs the whole-reply path, side by side.

For each prompt, in one process and interleaved (so machine load hits all alike):

* whole:  ``Generator(...)(conversation)``: Thinker, Talker, DiT and vocoder in turn;
  the first (and only) audio exists when it returns.
* stream (exact / window): ``Generator.stream(...)``, timed to the first audio chunk
  and to the end.

Two scenarios: the demo's held-out prompts as they are (replies of ~0.7 s), and the same
prompts with ``generate.min_codec_tokens`` forcing long replies (the Talker may not stop
before that many codes), where chunked decoding has room to pay off.

    .venv/bin/python benchmarks/streaming_latency.py runs/speech_stage/bundle \\
        --manifest data/demo/heldout/manifest.jsonl --repeats 2 --long 200
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from omnitrain.inference.generate import Generator, user_turn
from omnitrain.inference.streaming import AudioPiece


def prompts_of(manifest: Path) -> list[dict]:
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    return [user_turn(r["text"], *(str(manifest.parent / r[k]) if r.get(k) else None
                                   for k in ("audio", "image", "video"))) for r in rows]


def time_whole(gen: Generator, conversation: dict) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    reply = gen(conversation)
    t = time.perf_counter() - t0
    return t, t, reply.codec_tokens.numel()


def time_stream(gen: Generator, conversation: dict, mode: str) -> tuple[float, float, int]:
    gen.settings = dataclasses.replace(gen.settings, stream_mode=mode)
    t0, first = time.perf_counter(), None
    reply = None
    for piece in gen.stream(conversation):
        if isinstance(piece, AudioPiece) and first is None:
            first = time.perf_counter() - t0
        reply = piece
    total = time.perf_counter() - t0
    return (first if first is not None else total), total, reply.codec_tokens.numel()


def run(gen: Generator, prompts: list[dict], repeats: int) -> dict[str, dict[str, list[float]]]:
    ways = {"whole": lambda c: time_whole(gen, c), "stream exact": lambda c: time_stream(gen, c, "exact"),
            "stream window": lambda c: time_stream(gen, c, "window")}
    out = {w: {"first": [], "total": [], "codes": []} for w in ways}
    for _ in range(repeats):
        for conversation in prompts:
            for name, way in ways.items():  # interleaved: same load for each way
                first, total, codes = way(conversation)
                out[name]["first"].append(first)
                out[name]["total"].append(total)
                out[name]["codes"].append(codes)
    return out


def report(title: str, res: dict) -> None:
    base = statistics.median(res["whole"]["first"])
    print(f"\n{title}")
    print(f"{'path':<15} {'codes':>6} {'first audio':>12} {'total':>8} {'first / whole':>14}")
    for name, r in res.items():
        first, total = statistics.median(r["first"]), statistics.median(r["total"])
        print(f"{name:<15} {statistics.median(r['codes']):>6.0f} {first:>11.3f}s {total:>7.3f}s "
              f"{first / base:>14.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle")
    p.add_argument("--manifest", required=True)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--long", type=int, default=200, help="min codec tokens of the long-reply scenario")
    p.add_argument("--prompts", type=int, default=4, help="how many manifest prompts")
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    gen = Generator(Path(args.bundle))
    s = gen.settings
    print(f"bundle {args.bundle}: talker={gen.cfg.talker.name} dit={gen.cfg.dit.name} "
          f"(receptive field {gen.model.dit.receptive_field}) vocoder={gen.cfg.vocoder.name}; "
          f"ODE {s.ode_method} x {s.ode_steps}, guidance {s.guidance}; torch threads {torch.get_num_threads()}")
    prompts = prompts_of(Path(args.manifest))[: args.prompts]
    gen(prompts[0])  # warm-up
    report(f"demo prompts as they are ({len(prompts)} prompts x {args.repeats}, medians)",
           run(gen, prompts, args.repeats))
    s.min_codec_tokens = args.long
    s.max_codec_tokens = max(s.max_codec_tokens, args.long + 10)
    report(f"long replies: min_codec_tokens={args.long} ({len(prompts)} prompts x {args.repeats}, medians)",
           run(gen, prompts, args.repeats))


if __name__ == "__main__":
    main()
