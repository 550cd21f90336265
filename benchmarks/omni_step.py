"""The full omni training step (OmniModel: encoders, Thinker, Talker, DiT): where the time
goes per slot, and what the framework adds over a hand-written loop.

**A. Where the time goes** (one hand-written loop, hooks on): each step is cut into
regions on one timeline, every instant counted once, in the innermost region open:

- ``data_wait``: blocked on the training DataLoader (``next``), the copy to the device too;
- ``audio_encoder``, ``vision_encoder``: the slot module's forward (forward pre/post hooks);
- ``thinker``: its forward, its token embedding and the LM head fused with the text loss
  (``target_rows_loss``);
- ``talker``: its forward and the codec cross-entropy;
- ``dit``: the flow-matching loss (noise, the DiT forward, the masked MSE);
- ``forward_other``: the rest of ``OmniModel.forward`` (placing encoder outputs into the
  embeddings, the Talker's inputs and the speech conditions);
- ``backward`` (all slots together), ``optimizer`` (clipping, AdamW, schedule, zero_grad).

Timestamps are ``time.perf_counter`` on the CPU and CUDA events on a GPU (the step is
synchronised once at its end, so the regions are GPU time, idle gaps included). Reported:
the median ms of each region over the steps after ``--warmup``, and its share of all the
measured time (so the shares sum to 100); tokens/s (real, unpadded Thinker tokens) and, with
a known device peak (a data-sheet GPU or ``perf.peak_tflops``), MFU from
``omnitrain.training.performance.flops``.

**B. Framework vs hand loop**: the same composed config, model init (the run seed), batches,
optimizer and schedule, trained (1) by ``omnitrain.training.run.train`` -- the function
``omnitrain train`` calls: the user's Trainer, callbacks, loggers (``logger=csv``), progress
bar -- and (2) by a hand-written loop::

    for batch in loader:                 # the same DataLoader class, pipeline and collation
        reseed(step)                     # as StageModule does (same flow-matching noise)
        loss = model(batch)["loss"]; loss.backward()
        clip_grad_norm_(params, trainer.gradient_clip_val); opt.step(); sched.step(); opt.zero_grad()

**Included in both**: data loading and collation (the DataLoader with the config's workers:
the issue's "framework step" counts collation), the copy to the device, reading the loss
(``float(loss)``) and, on CUDA, a synchronisation at the step's end. A step's time is the
wall time between the ends of consecutive steps (Lightning: ``on_train_batch_end`` of a
timing callback appended to the user's callbacks), so everything the loop does between
batches counts. **Excluded from both**: validation (``trainer.limit_val_batches=0``) and
checkpoint saving (``checkpoint.every_n_steps`` past the run, no ``last.ckpt``): neither is a
per-step cost. Lightning's setup before the first batch is excluded (warm-up steps).

The two run in ``--rounds`` rounds, each a fresh Lightning run then a fresh hand loop
(order flipped every round; a busy machine slows both alike); a round's ratio = its median
Lightning step / its median hand step, the ratio = the median of the rounds' ratios (the
medians over all rounds' steps pooled are reported too). The same ratio on this process's
CPU time (``time.process_time``; data-loader workers not counted, the same work in both) is
reported beside it: on a shared machine, other jobs' load is in the wall time only. Checks:
the same sample keys in the same order, the losses of the two loops (equal up to float
noise), and every loop changed the weights. ``--explain`` (default: when the ratio is above
1.10) runs Lightning once more with each callback's hooks, ``LightningModule.log`` and the
loggers timed (mean ms per step); ``--without A,B`` removes callbacks from the Lightning run
(an ablation: what the ratio would be without them).

    .venv/bin/python benchmarks/omni_step.py                          # tiny size, baseline plugins, CPU
    .venv/bin/python benchmarks/omni_step.py --plugins qwen --size demo --override data=demo_long
    .venv/bin/python benchmarks/omni_step.py --device cuda --recipe omni05b_full --size omni05b \
        --override strategy=auto --override trainer.accumulate_grad_batches=1     # one GPU (not run yet)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
from omni_timing import REGIONS, SLOT_MODULES, Probe, Timeline, slot_timers, sync

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = {
    "baseline": [],
    "qwen": ["audio_encoder=whisper_audio", "vision_encoder=qwen_vit", "talker=dual_track", "dit=flow_dit",
             "position=tmrope"],
}
GOAL = 1.10


# ---- config ------------------------------------------------------------------------
def overrides(args, run_dir: Path, total_steps: int) -> list[str]:
    out = [f"recipe={args.recipe}", f"size={args.size}"]
    data = args.data
    if data is None and not any(o.startswith("data=") for o in args.override):
        data = ROOT / "data" / "demo"  # else the data=... group names its shards
    if data is not None:
        out += [f"data.train_shards={Path(data)}/train-*.tar", f"data.val_shards={Path(data)}/val-*.tar"]
    if args.device.startswith("cuda"):
        out += ["trainer=gpu", "trainer.devices=1"]
    out += PLUGINS[args.plugins] + list(args.override)
    # the measured window: no validation, no checkpoint saves; the user's logging and callbacks
    return out + [f"run_dir={run_dir}", "overwrite=true", "logger=csv", f"trainer.max_steps={total_steps}",
                  "trainer.limit_val_batches=0", f"checkpoint.every_n_steps={total_steps + 1}",
                  "checkpoint.save_last=false"]


def compose(args, run_dir: Path, total_steps: int):
    from omnitrain.run_config import compose_config

    return compose_config(overrides(args, run_dir, total_steps))


# ---- the hand-written loop ----------------------------------------------------------
@dataclass
class RunResult:
    """One training run's per-step record."""

    name: str
    times: list[float] = field(default_factory=list)  # seconds between consecutive step ends
    cpu: list[float] = field(default_factory=list)  # this process's CPU seconds in the same spans
    losses: list[float] = field(default_factory=list)
    keys: list[list[str]] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    flops: list[float] = field(default_factory=list)
    regions: list[dict[str, float]] = field(default_factory=list)  # part A only
    weights_changed: bool | None = None

    def steady(self, warmup: int, cpu: bool = False) -> list[float]:
        return (self.cpu if cpu else self.times)[warmup:]


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def changed(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> bool:
    """Every trained slot module moved (not only some parameter somewhere)."""
    now = dict(model.named_parameters())
    moved = {n.split(".")[0] for n, p in before.items() if not torch.equal(now[n].detach().cpu(), p)}
    slots = {n.split(".")[0] for n in before} & set(SLOT_MODULES)
    return bool(slots) and slots <= moved


def batches(data):
    """Epoch after epoch, as Lightning's loop asks the data module for each epoch's loader
    (where an epoch starts is the batches trained so far, which the module counts)."""
    while True:
        for batch in data.train_dataloader():
            data.trained += 1
            yield batch


class HandLoop:
    """The model, optimizer, schedule and loader of the config, built as the Lightning path
    builds them (``train``'s seed, ``OmniModule.configure_model`` and
    ``configure_optimizers``, the task's DataModule), stepped by hand."""

    def __init__(self, cfg, device: torch.device) -> None:
        import lightning as L

        from omnitrain.training.performance.flops import BatchFlops
        from omnitrain.training.run import prepare
        from omnitrain.training.stages.tasks import task_spec

        if cfg.strategy.name != "auto" or int(cfg.trainer.accumulate_grad_batches) != 1:
            raise SystemExit(f"strategy={cfg.strategy.name}, trainer.accumulate_grad_batches="
                             f"{cfg.trainer.accumulate_grad_batches}: the hand loop is one device, one batch per "
                             "step; add --override strategy=auto --override trainer.accumulate_grad_batches=1")
        run = prepare(cfg)  # the per-rank batch size, the DataModule, the checks: as train() does
        self.cfg, self.device = run.cfg, device
        L.seed_everything(self.cfg.seed, workers=True)
        module = task_spec(self.cfg).module(self.cfg)
        module.configure_model()
        self.module = module.to(device).train()
        self.model = module.model
        module.trainer = SimpleNamespace(max_steps=self.cfg.trainer.max_steps)  # what the schedule reads
        opt = module.configure_optimizers()
        module.trainer = None
        self.optimizer, self.scheduler = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.clip = self.cfg.trainer.gradient_clip_val
        precision = str(self.cfg.trainer.precision)
        if precision not in ("32-true", "32", "bf16-mixed"):
            raise SystemExit(f"trainer.precision={precision}: the hand loop does 32-true and bf16-mixed only")
        self.autocast = precision == "bf16-mixed"
        self.data = run.data
        self.flops = BatchFlops(run.meta, self.cfg)

    def run(self, steps: int, timeline: Timeline | None = None) -> RunResult:
        from lightning.fabric.utilities.apply_func import move_data_to_device

        from omnitrain.training.stages.stage_module import step_seed

        before = snapshot(self.model)
        out = RunResult("hand")
        t = timeline or Timeline(self.device, enabled=False)
        it = batches(self.data)
        last, last_cpu = time.perf_counter(), time.process_time()
        for step in range(steps):
            t.begin("data_wait")
            batch = move_data_to_device(next(it), self.device)
            t.mark("forward_other")
            torch.manual_seed(step_seed(int(self.cfg.seed), step, 0, 0))  # StageModule.on_train_batch_start
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                loss = self.model(batch)["loss"]
            t.mark("backward")
            loss.backward()
            t.mark("optimizer")
            if self.clip:
                torch.nn.utils.clip_grad_norm_(self.params, float(self.clip))
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            regions = t.end()
            out.losses.append(float(loss.detach()))
            sync(self.device)
            now, now_cpu = time.perf_counter(), time.process_time()
            out.times.append(now - last)
            out.cpu.append(now_cpu - last_cpu)
            last, last_cpu = now, now_cpu
            out.keys.append(list(batch.keys))
            out.tokens.append(batch.num_tokens)
            if regions is not None:
                out.regions.append(regions)
                out.flops.append(self.flops(batch))
        out.weights_changed = changed(self.model, before)
        return out


# ---- part A: where the time goes --------------------------------------------------
def where_time_goes(args, device: torch.device, workdir: Path) -> dict:
    from omnitrain.training.performance.flops import device_peak_flops

    total = args.warmup + args.steps
    cfg = compose(args, workdir / "breakdown", total)
    loop = HandLoop(cfg, device)
    timeline = Timeline(device)
    with slot_timers(loop.model, timeline) as timed:
        run = loop.run(total, timeline)
    steady = run.regions[args.warmup:]
    wall = sum(sum(r.values()) for r in steady)
    rows = {name: {"ms": 1e3 * statistics.median(r[name] for r in steady),
                   "percent": 100 * sum(r[name] for r in steady) / wall} for name in REGIONS}
    step_s = [sum(r.values()) for r in steady]
    seconds = sum(step_s)
    tokens = sum(run.tokens[args.warmup:])
    flops = sum(run.flops[args.warmup:])
    peak = device_peak_flops(loop.cfg)
    return {"regions": rows, "step_ms": 1e3 * statistics.median(step_s),
            "tokens_per_s": tokens / seconds, "tflops_per_s": flops / seconds / 1e12,
            "mfu": flops / seconds / peak if peak else None, "timed": timed,
            "losses": run.losses, "weights_changed": run.weights_changed}


# ---- part B: the user's Lightning path -------------------------------------------------
def lightning_callback_cls():
    import lightning as L

    class StepClock(L.Callback):
        """Step-end times, losses, batch keys; the weights before the first step."""

        def __init__(self, device: torch.device, warmup: int, probe: Probe | None = None) -> None:
            self.device, self.warmup, self.probe = device, warmup, probe
            self.result = RunResult("lightning")
            self.before: dict[str, torch.Tensor] = {}
            self.last = self.last_cpu = 0.0

        def on_train_start(self, trainer, pl_module) -> None:
            self.before = snapshot(pl_module.model)
            if self.probe is not None:
                self.probe.attach(trainer, pl_module)
            sync(self.device)
            self.last, self.last_cpu = time.perf_counter(), time.process_time()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
            self.result.losses.append(float(outputs["loss"]))
            sync(self.device)
            now, now_cpu = time.perf_counter(), time.process_time()
            self.result.times.append(now - self.last)
            self.result.cpu.append(now_cpu - self.last_cpu)
            self.last, self.last_cpu = now, now_cpu
            self.result.keys.append(list(batch.keys))
            self.result.tokens.append(batch.num_tokens)
            if self.probe is not None and len(self.result.times) == self.warmup:
                self.probe.reset()  # count the measured steps only

        def on_train_end(self, trainer, pl_module) -> None:
            self.result.weights_changed = changed(pl_module.model, self.before)

    return StepClock


def lightning_run(args, device: torch.device, run_dir: Path, probe: Probe | None = None) -> RunResult:
    import omnitrain.training.run as run_mod

    total = args.warmup + args.steps
    cfg = compose(args, run_dir, total)
    clock = lightning_callback_cls()(device, args.warmup, probe)
    build = run_mod.build_trainer

    drop = set(args.without)

    def build_with_clock(*a, **k):
        trainer = build(*a, **k)
        names = {type(c).__name__ for c in trainer.callbacks}
        if drop - names:
            raise SystemExit(f"--without {','.join(sorted(drop - names))}: not among the run's callbacks {sorted(names)}")
        trainer.callbacks[:] = [c for c in trainer.callbacks if type(c).__name__ not in drop] + [clock]
        return trainer

    run_mod.build_trainer = build_with_clock
    try:
        quiet = contextlib.nullcontext() if args.progress else _quiet()
        with quiet:  # Lightning's bar writes to stdout; the bar's work is still done
            run_mod.train(cfg)
    finally:
        run_mod.build_trainer = build
    return clock.result


class _Devnull:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(_Devnull()), contextlib.redirect_stderr(_Devnull()):
        yield


def framework_vs_hand(args, device: torch.device, workdir: Path) -> dict:
    total = args.warmup + args.steps
    lightning, hand, rounds = [], [], []
    for r in range(args.rounds):
        order = ("lightning", "hand") if r % 2 == 0 else ("hand", "lightning")
        got = {}
        for name in order:
            if name == "lightning":
                got[name] = lightning_run(args, device, workdir / f"lightning{r}")
            else:
                got[name] = HandLoop(compose(args, workdir / f"hand{r}", total), device).run(total)
        lightning.append(got["lightning"])
        hand.append(got["hand"])
        lw, hw = (statistics.median(got[k].steady(args.warmup)) for k in ("lightning", "hand"))
        lc, hc = (statistics.median(got[k].steady(args.warmup, cpu=True)) for k in ("lightning", "hand"))
        rounds.append({"order": list(order), "lightning_ms": 1e3 * lw, "hand_ms": 1e3 * hw, "ratio": lw / hw,
                       "lightning_cpu_ms": 1e3 * lc, "hand_cpu_ms": 1e3 * hc, "cpu_ratio": lc / hc})
    l_times = [t for run in lightning for t in run.steady(args.warmup)]
    h_times = [t for run in hand for t in run.steady(args.warmup)]
    l_med, h_med = statistics.median(l_times), statistics.median(h_times)
    same_keys = all(a.keys == b.keys for a, b in zip(lightning, hand))
    loss_diff = max(abs(a - b) for x, y in zip(lightning, hand) for a, b in zip(x.losses, y.losses))
    return {
        # the ratio: the median over rounds of each round's two medians (a round's pair ran
        # back to back, so the machine's load drifting between rounds cancels)
        "ratio": statistics.median(r["ratio"] for r in rounds),
        # the same on this process's CPU time: what other jobs on the machine take is not in it
        "cpu_ratio": statistics.median(r["cpu_ratio"] for r in rounds),
        "lightning_step_ms": 1e3 * l_med, "hand_step_ms": 1e3 * h_med, "pooled_ratio": l_med / h_med,
        "ratio_goal": GOAL, "rounds": rounds, "measured_steps_each": len(l_times),
        "checks": {
            "same_batches": same_keys,
            "max_loss_diff": loss_diff,
            "losses_finite": all(all(map(_finite, r.losses)) for r in lightning + hand),
            "lightning_weights_changed": all(r.weights_changed for r in lightning),
            "hand_weights_changed": all(r.weights_changed for r in hand),
            "first_losses": {"lightning": lightning[0].losses[0], "hand": hand[0].losses[0]},
        },
    }


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


def explain(args, device: torch.device, workdir: Path, hand_ms: float) -> dict:
    """One more Lightning run with the probe: mean ms per measured step in each hook."""
    probe = Probe()
    run = lightning_run(args, device, workdir / "explain", probe)
    n = len(run.steady(args.warmup))
    parts = {k: 1e3 * v / n for k, v in sorted(probe.seconds.items(), key=lambda kv: -kv[1])}
    step_ms = 1e3 * statistics.median(run.steady(args.warmup))
    extra = sum(v for k, v in parts.items() if k not in Probe.SHARED)
    return {"step_ms_probed": step_ms, "hand_step_ms": hand_ms, "mean_ms_per_step": parts,
            "calls_per_step": {k: v / n for k, v in probe.calls.items()},
            "framework_only_ms": extra,
            "shared_with_hand_loop": [k for k in parts if k in Probe.SHARED],
            "note": "exclusive host time in each hook (a hook's self.log calls count under module.log); "
                    "framework_only_ms sums the rows the hand loop does not do; the rest of the difference "
                    "is Lightning's loop itself (fetching, hook dispatch, closures, result collection)"}


# ---- report -----------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=None, help="shard directory (train-*.tar, val-*.tar); default data/demo, "
                   "or the shards of a data=... override")
    p.add_argument("--plugins", choices=sorted(PLUGINS), default="baseline")
    p.add_argument("--size", default="tiny", help="size=... (configs/size/): tiny, demo, omni05b, ...")
    p.add_argument("--recipe", default="smoke", help="the base recipe (batch size, workers, logging)")
    p.add_argument("--override", action="append", default=[], help="an extra config override (repeatable), "
                   "e.g. data=demo_long, data.batch_size=8")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--steps", type=int, default=20, help="measured steps per run (median)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3, help="part B: Lightning/hand rounds (order flipped each)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--parts", default="A,B", help="A: where the time goes; B: framework vs hand loop")
    p.add_argument("--explain", choices=("auto", "always", "never"), default="auto",
                   help="time Lightning's callbacks/logging once more (auto: when the ratio is above 1.10)")
    p.add_argument("--progress", action="store_true", help="show Lightning's output and progress bar")
    p.add_argument("--without", type=lambda v: [n for n in v.split(",") if n], default=[],
                   help="an ablation: the Lightning run without these callbacks (class names, comma-separated), "
                   "e.g. Throughput,GradNorms,NonFiniteGuard")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    parts = {s.strip().upper() for s in args.parts.split(",")}
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = {"command": " ".join(["benchmarks/omni_step.py", *(argv if argv is not None else sys.argv[1:])]),
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({args.threads} threads)",
              "plugins": args.plugins, "size": args.size, "recipe": args.recipe, "overrides": args.override,
              "lightning_without": args.without,
              "steps": args.steps, "warmup": args.warmup, "torch": torch.__version__}
    try:
        with tempfile.TemporaryDirectory(prefix="omni_step_") as tmp:
            work = Path(tmp)
            cfg = compose(args, work / "config", args.warmup + args.steps)  # fails fast on a bad override
            result["slots"] = {s: cfg.slot(s).name for s in ("audio_encoder", "vision_encoder", "position",
                                                            "thinker", "talker", "dit")}
            result["batch"] = {"batching": cfg.data.batching, "batch_size": cfg.data.batch_size,
                               "num_workers": cfg.data.num_workers, "precision": str(cfg.trainer.precision)}
            if "A" in parts:
                result["breakdown"] = where_time_goes(args, device, work)
            if "B" in parts:
                result["framework"] = fw = framework_vs_hand(args, device, work)
                if args.explain == "always" or (args.explain == "auto" and fw["ratio"] > GOAL):
                    result["explain"] = explain(args, device, work, fw["hand_step_ms"])
    finally:
        torch.set_num_threads(threads)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


def print_report(result: dict) -> None:
    print(f"# omni step, {result['device']}: recipe={result['recipe']} size={result['size']} "
          f"{' '.join(result['overrides'])}; median of {result['steps']} after {result['warmup']} warm-up")
    if result["lightning_without"]:
        print(f"ablation: the Lightning run without {', '.join(result['lightning_without'])}")
    print("slots: " + ", ".join(f"{k}={v}" for k, v in result["slots"].items())
          + "; " + ", ".join(f"{k} {v}" for k, v in result["batch"].items()))
    if "breakdown" in result:
        b = result["breakdown"]
        mfu = f", MFU {100 * b['mfu']:.2f}%" if b["mfu"] else ""
        print(f"\n## Where the time goes (hand loop, hooks on): step {b['step_ms']:.1f} ms, "
              f"{b['tokens_per_s']:,.0f} tokens/s, {b['tflops_per_s']:.4f} TFLOP/s{mfu}")
        print("| region | ms (median) | % of step |\n|---|---|---|")
        for name, row in b["regions"].items():
            print(f"| {name} | {row['ms']:.2f} | {row['percent']:.1f}% |")
    if "framework" in result:
        f = result["framework"]
        print(f"\n## Framework vs hand loop ({len(f['rounds'])} rounds, {f['measured_steps_each']} steps each)")
        print("| round | order | Lightning ms | hand ms | ratio | Lightning CPU ms | hand CPU ms | CPU ratio |")
        print("|---|---|---|---|---|---|---|---|")
        for i, r in enumerate(f["rounds"]):
            print(f"| {i} | {' then '.join(r['order'])} | {r['lightning_ms']:.1f} | {r['hand_ms']:.1f} | "
                  f"{r['ratio']:.3f}x | {r['lightning_cpu_ms']:.1f} | {r['hand_cpu_ms']:.1f} | {r['cpu_ratio']:.3f}x |")
        verdict = "meets" if f["ratio"] <= GOAL else "misses"
        print(f"| all steps pooled | | {f['lightning_step_ms']:.1f} | {f['hand_step_ms']:.1f} | "
              f"{f['pooled_ratio']:.3f}x |")
        print(f"ratio (median of the rounds' ratios): **{f['ratio']:.3f}x** ({verdict} the goal <= {GOAL}x); "
              f"on this process's CPU time: {f['cpu_ratio']:.3f}x")
        c = f["checks"]
        print(f"checks: same batches {c['same_batches']}, max |loss diff| {c['max_loss_diff']:.2e}, "
              f"weights changed: Lightning {c['lightning_weights_changed']}, hand {c['hand_weights_changed']}")
    if "explain" in result:
        e = result["explain"]
        print(f"\n## Where Lightning's extra time goes (probed run: step {e['step_ms_probed']:.1f} ms; "
              f"hand loop {e['hand_step_ms']:.1f} ms)")
        print("| hook (exclusive host time) | ms per step | calls per step |\n|---|---|---|")
        for name, ms in e["mean_ms_per_step"].items():
            shared = " (the hand loop does this too)" if name in e["shared_with_hand_loop"] else ""
            print(f"| {name}{shared} | {ms:.3f} | {e['calls_per_step'][name]:.1f} |")
        print(f"| **framework only, sum** | **{e['framework_only_ms']:.2f}** | |")


if __name__ == "__main__":
    main()
