"""``thinker.compile=true`` trains to the numbers of eager: the same Thinker built twice
from one seed (``benchmarks/thinker_step.py``'s shapes, init, batch and loss), once eager and
once with each block ``torch.compile``d in place, trained side by side for ``--steps`` AdamW
steps (lr 1e-4) on the same batch, the steps alternating between the two (a busy machine
slows both alike). Reported: each step's loss, the largest difference of any parameter after
the last step (beside the largest update eager made, for scale), the optimizer's own step
count of each model, how many graphs dynamo compiled, and the step times (the compiled
model's first step includes compiling).

    .venv/bin/python benchmarks/compile_parity.py --json compile_parity.json   # inductor, tiny, 6 steps
    .venv/bin/python benchmarks/compile_parity.py --backend aot_eager          # capture + autograd only

``--backend inductor`` (the default) is what ``thinker.compile=true`` runs; any other backend
re-compiles the same blocks in place with it (``Module.compile(backend=...)``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from thinker_step import PRESETS, build_omnitrain, make_batch, omnitrain_loss, optimizer_for


def build(shape: dict, compiled: bool, backend: str) -> torch.nn.Module:
    model = build_omnitrain(shape, "compile" if compiled else "auto", torch.device("cpu"))
    if compiled and backend != "inductor":
        for layer in model.layers:
            layer.compile(backend=backend)
    return model.train()


def train_side_by_side(shape: dict, steps: int, backend: str) -> dict:
    ids, labels = make_batch(shape, target_fraction=1.0)
    docs = torch.ones_like(ids)
    runs = {}
    for name in ("eager", "compiled"):
        model = build(shape, name == "compiled", backend)
        runs[name] = {"model": model, "loss": omnitrain_loss(model, ids, labels, docs),
                      "optimizer": optimizer_for(model, torch.device("cpu")), "losses": [], "times_s": []}
    initial = {n: p.detach().clone() for n, p in runs["eager"]["model"].named_parameters()}
    same_init = all(torch.equal(initial[n], p) for n, p in runs["compiled"]["model"].named_parameters())
    if not same_init:
        raise SystemExit("the two models do not start from the same weights")
    torch._dynamo.utils.counters.clear()
    for _ in range(steps):
        for run in runs.values():
            t0 = time.perf_counter()
            loss = run["loss"]()
            loss.backward()
            run["optimizer"].step()
            run["optimizer"].zero_grad(set_to_none=True)
            run["times_s"].append(time.perf_counter() - t0)
            run["losses"].append(float(loss.detach()))
    eager, compiled = (dict(runs[k]["model"].named_parameters()) for k in ("eager", "compiled"))
    out = {
        "max_param_diff": max((eager[n] - compiled[n]).abs().max().item() for n in eager),
        "max_eager_update": max((eager[n] - initial[n]).abs().max().item() for n in eager),
        "max_loss_diff": max(abs(a - b) for a, b in zip(runs["eager"]["losses"], runs["compiled"]["losses"])),
        "compiled_graphs": int(torch._dynamo.utils.counters["stats"]["unique_graphs"]),
    }
    for name, run in runs.items():
        state = run["optimizer"].state
        out[name] = {"losses": run["losses"], "times_s": run["times_s"],
                     "optimizer_steps": sorted({int(s["step"]) for s in state.values()}),
                     "first_step_ms": 1e3 * run["times_s"][0],
                     "later_steps_ms": 1e3 * statistics.median(run["times_s"][1:]) if steps > 1 else None}
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--seq", type=int, default=None, help="tokens per row (default: the preset's)")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--backend", default="inductor", help="torch.compile backend: inductor, aot_eager, ...")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    shape = dict(PRESETS[args.preset])
    if args.seq is not None:
        shape["seq"] = args.seq
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        result = {"command": " ".join(["benchmarks/compile_parity.py", *(argv if argv is not None else sys.argv[1:])]),
                  "torch": torch.__version__, "device": f"cpu ({args.threads} threads)", "backend": args.backend,
                  "shape": shape, "steps": args.steps, **train_side_by_side(shape, args.steps, args.backend)}
    finally:
        torch.set_num_threads(threads)
    print(f"# eager vs torch.compile ({args.backend}), {args.preset} {shape}, {args.steps} AdamW steps, "
          f"{result['device']}, torch {result['torch']}")
    print(f"max |parameter diff| {result['max_param_diff']:.2e} (largest eager update {result['max_eager_update']:.2e}); "
          f"max |loss diff| {result['max_loss_diff']:.2e}; optimizer steps eager {result['eager']['optimizer_steps']}, "
          f"compiled {result['compiled']['optimizer_steps']}; graphs compiled {result['compiled_graphs']}")
    for name in ("eager", "compiled"):
        r = result[name]
        later = f"{r['later_steps_ms']:.1f}" if r["later_steps_ms"] is not None else "-"
        print(f"{name}: losses {' '.join(f'{x:.6f}' for x in r['losses'])}; first step {r['first_step_ms']:.0f} ms, "
              f"later steps {later} ms (median)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
