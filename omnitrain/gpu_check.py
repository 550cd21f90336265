"""``omnitrain gpu-check``: the first thing to run on a machine with a GPU.

On demo shards it trains every strategy (auto, DDP, ZeRO-1/2/3, ZeRO-3 offload, FSDP)
with the baseline plugins and with the Qwen2.5-Omni plugins, in bf16, at the demo size:
6 steps with a checkpoint every 3, a resume to step 8, an export of the bundle. Then one
0.5B run (``recipe=omni05b_full`` on one GPU). Each run is its own process with a time
limit (a hung run is dumped with ``kill -USR2`` and stopped, not waited for), a few run
side by side. The table gives status, tokens/s, MFU, peak GPU memory against
``omnitrain plan``, and the first and last loss.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

PLUGIN_SETS = {
    "baseline": (),
    "qwen": ("audio_encoder=whisper_audio", "vision_encoder=qwen_vit", "talker=dual_track", "dit=flow_dit"),
}
SMALL = ("trainer.max_steps=6", "checkpoint.every_n_steps=3", "trainer.val_check_interval=6",
         "trainer.limit_val_batches=1", "data.batch_size=8", "generate.ode_steps=2")
BIG = ("recipe=omni05b_full", "strategy=auto", "trainer.accumulate_grad_batches=1", "trainer.max_steps=10",
       "trainer.limit_val_batches=0", "checkpoint.every_n_steps=100000", "data.num_workers=4")


@dataclass
class Cell:
    name: str
    overrides: tuple[str, ...]
    resume_export: bool = True


@dataclass
class Result:
    name: str
    status: str = "not run"
    tokens_per_s: float | None = None
    mfu: float | None = None
    peak_gib: float | None = None
    plan_gib: float | None = None
    first_loss: float | None = None
    last_loss: float | None = None
    first_text_loss: float | None = None
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)


def strategy_presets() -> list[str]:
    """Every option of the ``strategy`` group: each registered strategy at its defaults,
    and the presets in configs/strategy/*.yaml (ZeRO stages, offload)."""
    from omnitrain.config.compose import config_dir
    from omnitrain.parallel import registered_strategies

    files = {p.stem for p in (config_dir() / "strategy").glob("*.yaml")}
    bare = {n for n in registered_strategies() if not any(f.startswith(f"{n}_") for f in files)}
    return sorted(bare | files)  # a strategy with presets runs as its presets


def cells() -> list[Cell]:
    out = [Cell(f"{p}/{s}", (*SMALL, f"strategy={s}", *o)) for p, o in PLUGIN_SETS.items()
           for s in strategy_presets()]
    return out + [Cell("omni05b_full/auto", BIG, resume_export=False)]


def _run(cmd: list[str], env: dict, timeout: float, log: Path) -> tuple[int, str]:
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return proc.wait(timeout=timeout), ""
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR2)  # faulthandler: where it hangs
            time.sleep(3)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return -9, f"timed out after {timeout:.0f}s (stacks in {log})"


def _first_error(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    hits = [ln for ln in lines if "Error" in ln or ln.startswith("error:")]
    return (hits[-1] if hits else (lines[-1] if lines else "no output")).strip()[:200]


def _metrics(run: Path) -> dict:
    path = run / "csv" / "metrics.csv"
    if not path.exists():
        return {}
    with open(path) as f:
        rows = list(csv.DictReader(f))

    def column(key: str) -> list[float]:
        return [float(r[key]) for r in rows if r.get(key)]

    losses, text = column("train/loss"), column("train/text")
    rates, mfu, mem = column("perf/tokens_per_s"), column("perf/mfu"), column("perf/max_memory_gib")
    return {"first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "first_text_loss": text[0] if text else None,
            "tokens_per_s": rates[-1] if rates else None, "mfu": mfu[-1] if mfu else None,
            "peak_gib": max(mem) if mem else None, "finite": all(math.isfinite(x) for x in losses) and bool(losses)}


def trainer_overrides(accelerator: str) -> list[str]:
    """The GPU in bf16; ``cpu`` runs the same cells on the CPU (bf16 autocast), to try the
    check itself where there is no GPU."""
    if accelerator == "cpu":
        return ["trainer=cpu", "trainer.precision=bf16-mixed"]
    return ["trainer=gpu", "trainer.devices=1"]


def run_cell(cell: Cell, data: Path, out: Path, port: int, timeout: float, accelerator: str = "gpu") -> Result:
    res, t0 = Result(cell.name), time.perf_counter()
    run = out / cell.name.replace("/", "__")
    env = {**os.environ, "MASTER_PORT": str(port), "WANDB_MODE": "disabled"}
    common = [f"run_dir={run}", "logger=csv", *trainer_overrides(accelerator), "trainer.log_every_n_steps=1",
              f"data.train_shards={data}/train-*.tar", f"data.val_shards={data}/val-*.tar", *cell.overrides]
    py = [sys.executable, "-m", "omnitrain"]
    stages = [("train", [*py, "train", *common])]
    if cell.resume_export:
        stages += [("resume", [*py, "train", *common, "trainer.max_steps=8", "resume=last"]),
                   ("export", [*py, "export", str(run / "checkpoints" / "last.ckpt"), str(run / "bundle")])]
    run.mkdir(parents=True, exist_ok=True)
    for stage, cmd in stages:
        log = run / f"{stage}.log"
        rc, why = _run(cmd, env, timeout, log)
        res.log.append(str(log))
        if rc != 0:
            res.status = f"FAIL {stage}: {why or _first_error(log)}"
            break
    else:
        res.status = "pass"
    m = _metrics(run)
    for key in ("tokens_per_s", "mfu", "peak_gib", "first_loss", "last_loss", "first_text_loss"):
        setattr(res, key, m.get(key))
    if res.status == "pass" and not m.get("finite"):
        res.status = "FAIL: loss not finite"
    res.seconds = time.perf_counter() - t0
    return res


def planned_gib(cell: Cell, data: Path, accelerator: str = "gpu") -> float | None:
    """``omnitrain plan``'s per-GPU figure for the cell's own strategy, on one GPU."""
    from omnitrain.run_config import compose_config
    from omnitrain.training.performance.plan import GiB, chosen, make_plan, per_gpu_total

    try:
        cfg = compose_config([*cell.overrides, *trainer_overrides(accelerator),
                              f"data.train_shards={data}/train-*.tar", "data.num_workers=0"])
        plan = make_plan(cfg, 1, 1)
        return per_gpu_total(plan, chosen(cfg)) / GiB
    except Exception as exc:  # the check reports; it does not stop on a plan error
        print(f"plan of {cell.name} failed: {exc}", file=sys.stderr)
        return None


def ensure_demo(data: Path) -> None:
    if (data / "index.json").exists():
        return
    from omnitrain.data.build.demo import DemoSizes, make_demo
    from omnitrain.registry import build
    from omnitrain.run_config import compose_config

    print(f"writing demo shards to {data}", flush=True)
    make_demo(data, build("codec", compose_config([]).codec), DemoSizes(train=512, val=64, heldout=4, per_shard=128))


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def table(results: list[Result], device: str) -> str:
    head = (f"GPU check on {device}\n\n| run | status | tokens/s | MFU | peak GiB | plan GiB | first loss "
            "| last loss | first text loss | s |\n|---|---|---|---|---|---|---|---|---|---|")
    rows = [f"| {r.name} | {r.status} | {fmt(r.tokens_per_s, ',.0f')} | {fmt(r.mfu and 100 * r.mfu, '.1f')}% "
            f"| {fmt(r.peak_gib, '.2f')} | {fmt(r.plan_gib, '.2f')} | {fmt(r.first_loss, '.3f')} "
            f"| {fmt(r.last_loss, '.3f')} | {fmt(r.first_text_loss, '.3f')} | {r.seconds:.0f} |" for r in results]
    return "\n".join([head, *rows])


def gpu_check(out: Path, data: Path, parallel: int = 4, timeout: float = 240.0, only: list[str] | None = None,
              accelerator: str = "gpu", overrides: list[str] | None = None) -> int:
    """Every cell (or those named by ``only``), ``overrides`` appended to each cell's own."""
    import torch

    if accelerator == "gpu" and not torch.cuda.is_available():
        print("error: no CUDA device: gpu-check runs on a machine with a GPU (--accelerator cpu tries "
              "the check itself on the CPU)", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name() if accelerator == "gpu" else "CPU"
    out.mkdir(parents=True, exist_ok=True)
    ensure_demo(data)
    todo = [replace(c, overrides=(*c.overrides, *(overrides or ())))
            for c in cells() if not only or any(o in c.name for o in only)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        futures = [pool.submit(run_cell, c, data, out, 29400 + i, timeout, accelerator) for i, c in enumerate(todo)]
        plans = {c.name: planned_gib(c, data, accelerator) for c in todo}  # on the CPU while the GPU trains
        results = [f.result() for f in futures]
    for r in results:
        r.plan_gib = plans.get(r.name)
        print(f"{r.name}: {r.status} ({r.seconds:.0f}s)", flush=True)
    text = table(results, device) + f"\n\ntotal wall time {time.perf_counter() - t0:.0f}s, {parallel} runs at a time\n"
    print("\n" + text)
    (out / "gpu_check.md").write_text(text)
    (out / "gpu_check.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.status == "pass" for r in results) else 1
