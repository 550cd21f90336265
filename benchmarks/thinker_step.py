"""One Thinker training step: omnitrain's ``qwen2`` Thinker vs transformers' Qwen2ForCausalLM.

Both models are built in this process at the same shape, the transformers one with a copy
of omnitrain's initial weights, and trained on the same batch (forward, full-vocabulary
cross-entropy, backward, AdamW, fused on CUDA). Before timing, the first losses are
checked equal (fp32: 1e-4, bf16: 2% relative); then the steps alternate between the models
(the order flips every round) and each reports the median of ``--steps`` after
``--warmup``. Reported: tokens/s, MFU on CUDA (6 N T + 12 L d s^2 over the device's peak,
``omnitrain.training.performance.flops``), peak memory and the ratios omnitrain / transformers.

Peak memory: on CUDA, the most ``max_memory_allocated`` rose during the model's own
steps over what was allocated when each step began, plus the model's own resident state
(weights, optimizer states); so the other model, resident too, is not counted. On the CPU,
each model runs its steps once more in a fresh child process (glibc told to return every
large block to the OS) and reports how much its peak RSS grew over its RSS before the steps.

    .venv/bin/python benchmarks/thinker_step.py --preset cpu                  # the CPU proxy
    .venv/bin/python benchmarks/thinker_step.py --preset qwen05b --device cuda --dtype bf16

Variants of omnitrain (``--variants``): ``auto`` (thinker.attention=auto: varlen on CUDA,
dense elsewhere), ``dense``, ``packed`` (rows packed with 3-15 documents; its loss is not
comparable), ``ckpt`` (per-block activation checkpointing), ``compile`` (torch.compile of
each block).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import torch

PRESETS = {
    # shape: hidden, layers, heads, kv_heads, ffn, vocab, rows, seq, tied
    "tiny": dict(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, vocab=1000, rows=2, seq=128, tied=True),
    "cpu": dict(hidden=256, layers=4, heads=4, kv_heads=2, ffn=1024, vocab=32000, rows=2, seq=1024, tied=True),
    "qwen05b": dict(hidden=896, layers=24, heads=14, kv_heads=2, ffn=4864, vocab=151936, rows=4, seq=4096,
                    tied=True),
}
GiB = 2**30


@dataclass
class Runner:
    """One model's training step on the shared batch."""

    name: str
    model: torch.nn.Module
    step_loss: object  # () -> loss tensor (forward only)
    optimizer: torch.optim.Optimizer
    times: list[float] = field(default_factory=list)
    peak_extra: int = 0  # CUDA: most bytes a step added over its start
    losses: list[float] = field(default_factory=list)

    def step(self, device: torch.device, autocast: bool, measure: bool) -> float:
        sync(device)
        if device.type == "cuda":
            start_bytes = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = self.step_loss()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        sync(device)
        elapsed = time.perf_counter() - t0
        if measure:
            self.times.append(elapsed)
            if device.type == "cuda":
                self.peak_extra = max(self.peak_extra, torch.cuda.max_memory_allocated(device) - start_bytes)
        self.losses.append(float(loss.detach()))
        return elapsed

    def resident_bytes(self) -> int:
        """Weights and optimizer states (grads are freed between steps)."""
        seen, total = set(), 0
        for p in self.model.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel() * p.element_size()
        for state in self.optimizer.state.values():
            total += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
        return total


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def shape_from(args) -> dict:
    shape = dict(PRESETS[args.preset])
    for key in ("hidden", "layers", "heads", "kv_heads", "ffn", "vocab", "rows", "seq"):
        if getattr(args, key) is not None:
            shape[key] = getattr(args, key)
    return shape


def make_batch(shape: dict, target_fraction: float, seed: int = 0):
    """Random token ids; targets on the last ``target_fraction`` of each row (the reply)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, shape["vocab"], (shape["rows"], shape["seq"]), generator=g)
    labels = ids.clone()
    prompt = int(round(shape["seq"] * (1 - target_fraction)))
    labels[:, :prompt] = -100
    return ids, labels


def packed_doc_ids(rows: int, seq: int, seed: int = 0) -> torch.Tensor:
    """Rows packed with 3-15 documents of random lengths, no padding."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(rows, seq, dtype=torch.long)
    for r in range(rows):
        n = int(torch.randint(3, 16, (1,), generator=g))
        cuts = sorted(torch.randperm(seq - 1, generator=g)[: n - 1].add(1).tolist())
        for d, (a, b) in enumerate(zip([0, *cuts], [*cuts, seq]), 1):
            out[r, a:b] = d
    return out


def build_omnitrain(shape: dict, variant: str, device: torch.device):
    from omnitrain.nn.init import reference_init
    from omnitrain_plugins.qwen_omni.qwen2_thinker import Qwen2Thinker, Qwen2ThinkerConfig
    from omnitrain_plugins.rope1d import Rope1d, Rope1dConfig

    cfg = Qwen2ThinkerConfig(hidden_size=shape["hidden"], layers=shape["layers"], heads=shape["heads"],
                             kv_heads=shape["kv_heads"], ffn_dim=shape["ffn"], tie_embeddings=shape["tied"],
                             attention="dense" if variant == "dense" else "auto",
                             activation_checkpointing=variant == "ckpt", compile=variant == "compile")
    torch.manual_seed(0)
    with reference_init():
        model = Qwen2Thinker(cfg, shape["vocab"], Rope1d(Rope1dConfig(theta=1e6)))
    return model.to(device)


def omnitrain_loss(model, ids: torch.Tensor, labels: torch.Tensor, doc_ids: torch.Tensor, host_runs: bool = True):
    """The Thinker's training loss as ``OmniModel`` computes it: documents and target rows
    found on the host (as collate does), the head fused with the cross-entropy."""
    from omnitrain.model.lm_loss import target_rows_loss
    from omnitrain.nn.varlen import doc_runs

    B, L = ids.shape
    same_doc = doc_ids[:, 1:] == doc_ids[:, :-1]
    targets = labels[:, 1:].masked_fill(~same_doc, -100)
    index = (targets != -100).flatten().nonzero()[:, 0]
    runs = doc_runs(doc_ids) if host_runs else None
    device = next(model.parameters()).device
    position_ids = torch.cat([torch.arange(int((row == d).sum())) for row in doc_ids for d in row.unique()])
    position_ids = position_ids.view(1, B, L)
    ids, targets, doc_ids, position_ids, index = (t.to(device) for t in (ids, targets, doc_ids, position_ids, index))
    runs = runs.to(device) if runs is not None else None

    def loss():
        hidden = model(model.embed(ids), position_ids, doc_ids, doc_runs=runs)
        return target_rows_loss(model.head_linear(), hidden[:, :-1], targets, index=index)

    return loss


def build_transformers(shape: dict, source: torch.nn.Module, device: torch.device):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(vocab_size=shape["vocab"], hidden_size=shape["hidden"], intermediate_size=shape["ffn"],
                      num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
                      num_key_value_heads=shape["kv_heads"], rms_norm_eps=1e-6, tie_word_embeddings=shape["tied"],
                      max_position_embeddings=max(32768, shape["seq"]), use_cache=False,
                      rope_parameters={"rope_type": "default", "rope_theta": 1e6})
    cfg._attn_implementation = "sdpa"
    model = Qwen2ForCausalLM(cfg)
    state = {(k if k.startswith("lm_head") else f"model.{k}"): v for k, v in source.state_dict().items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("inv_freq") and not (shape["tied"] and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"weights did not map: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device)


def transformers_loss(model, ids: torch.Tensor, labels: torch.Tensor):
    device = next(model.parameters()).device
    ids, labels = ids.to(device), labels.to(device)
    return lambda: model(input_ids=ids, labels=labels).loss


def optimizer_for(model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda" or None)


def step_flops(shape: dict) -> float:
    """6 N T + 12 L d s^2 (omnitrain.training.performance.flops; attention in full, PaLM's MFU)."""
    d, f, h, kv, layers = shape["hidden"], shape["ffn"], shape["heads"], shape["kv_heads"], shape["layers"]
    head_dim = d // h
    per_layer = d * h * head_dim * 2 + d * kv * head_dim * 2 + 3 * d * f
    n = layers * per_layer + shape["vocab"] * d
    tokens = shape["rows"] * shape["seq"]
    return 6 * n * tokens + 12 * layers * d * shape["rows"] * shape["seq"] ** 2


def device_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    from omnitrain.training.performance.flops import PEAK_FLOPS

    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def make_runner(name: str, shape: dict, args, device: torch.device, ids, labels, reference=None) -> Runner:
    """``name``: transformers or omnitrain[:variant]. ``reference``: omnitrain's model whose
    weights transformers copies."""
    if name == "transformers":
        src = reference if reference is not None else build_omnitrain(shape, "auto", torch.device("cpu"))
        model = build_transformers(shape, src, device)
        fn = transformers_loss(model, ids, labels)
    else:
        variant = name.partition(":")[2] or "auto"
        model = build_omnitrain(shape, variant, device)
        docs = packed_doc_ids(*ids.shape) if variant == "packed" else torch.ones_like(ids)
        # dense: the mask path (no host-found documents, so no causal shortcut)
        fn = omnitrain_loss(model, ids, labels, docs, host_runs=variant != "dense")
    model.train()
    return Runner(name, model, fn, optimizer_for(model, device))


# ---- CPU memory: one model per child process --------------------------------------
def rss_bytes(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field_name} in /proc/self/status")


def child_memory(args) -> None:
    """Run in a fresh process: warm-up steps, then the peak RSS growth of ``--steps`` more."""
    shape, device = shape_from(args), torch.device("cpu")
    torch.set_num_threads(args.threads)
    ids, labels = make_batch(shape, args.target_fraction)
    runner = make_runner(args.memory_child, shape, args, device, ids, labels)
    autocast = args.dtype == "bf16"
    for _ in range(max(1, args.warmup)):
        runner.step(device, autocast, measure=False)
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc_trim(0)
    before = rss_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS
        f.write("5")
    for _ in range(args.steps):
        runner.step(device, autocast, measure=False)
    print(json.dumps({"rss_growth": rss_bytes("VmHWM") - before, "rss_before": before}))


def cpu_memory(name: str, args) -> int | None:
    cmd = [sys.executable, __file__, "--memory-child", name, "--preset", args.preset, "--dtype", args.dtype,
           "--steps", "2", "--warmup", "1", "--threads", str(args.threads),
           "--target-fraction", str(args.target_fraction)]
    for key in ("hidden", "layers", "heads", "kv_heads", "ffn", "vocab", "rows", "seq"):
        if getattr(args, key) is not None:
            cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    # every block over 128 KiB mmap'd, so what a step frees leaves the RSS
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", MALLOC_TRIM_THRESHOLD_="131072")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        print(out.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["rss_growth"]


# ---- the comparison --------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    for key in ("hidden", "layers", "heads", "kv-heads", "ffn", "vocab", "rows", "seq"):
        p.add_argument(f"--{key}", type=int, default=None)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", choices=("bf16", "fp32"), default=None,
                   help="bf16: autocast over fp32 weights (bf16-mixed); default bf16 on CUDA, fp32 on CPU")
    p.add_argument("--steps", type=int, default=8, help="timed steps per model (median)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--variants", default="auto", help="omnitrain variants, comma-separated: "
                   "auto,dense,packed,ckpt,compile")
    p.add_argument("--target-fraction", type=float, default=1.0,
                   help="share of each row with a text target (1.0: every token, the full-vocabulary CE)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--no-memory", action="store_true", help="CPU: skip the child-process RSS measurement")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.dtype = args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32")
    if args.memory_child:
        child_memory(args)
        return {}
    torch.set_num_threads(args.threads)
    device, shape = torch.device(args.device), shape_from(args)
    autocast = args.dtype == "bf16"
    ids, labels = make_batch(shape, args.target_fraction)
    tokens = shape["rows"] * shape["seq"]
    names = [f"omnitrain:{v}" for v in args.variants.split(",") if v] + ["transformers"]

    first = make_runner(names[0], shape, args, device, ids, labels)
    # the same initial weights everywhere: every omnitrain variant is built from one seed,
    # and transformers copies the weights of one more built alike on the CPU
    runners = [first] + [make_runner(n, shape, args, device, ids, labels) for n in names[1:]]
    for r in runners:
        r.step(device, autocast, measure=False)
    ref = runners[-1].losses[0]
    tol = 1e-4 if args.dtype == "fp32" else 2e-2 * abs(ref)
    checks = {}
    for r in runners[:-1]:
        diff = abs(r.losses[0] - ref)
        comparable = not r.name.endswith(":packed")
        checks[r.name] = {"first_loss": r.losses[0], "transformers_first_loss": ref, "abs_diff": diff,
                          "ok": (diff <= tol) if comparable else None}
        if comparable and diff > tol:
            raise SystemExit(f"{r.name}: first loss {r.losses[0]:.6f} vs transformers {ref:.6f} "
                             f"(|diff| {diff:.2e} > {tol:.1e}): the models do not compute the same thing")
    for _ in range(args.warmup - 1):
        for r in runners:
            r.step(device, autocast, measure=False)
    for i in range(args.steps):
        for r in (runners if i % 2 == 0 else runners[::-1]):
            r.step(device, autocast, measure=True)

    peak_flops = device_peak(device)
    flops = step_flops(shape)
    rows = {}
    for r in runners:
        med = statistics.median(r.times)
        row = {"tokens_per_s": tokens / med, "step_s": med,
               "mfu": flops / med / peak_flops if peak_flops else None}
        if device.type == "cuda":
            row["peak_bytes"] = r.peak_extra + r.resident_bytes()
        elif not args.no_memory:
            row["peak_bytes"] = cpu_memory(r.name, args)  # RSS growth of its steps, own process
        rows[r.name] = row
    base = rows["transformers"]
    for row in rows.values():
        row["speed_vs_transformers"] = row["tokens_per_s"] / base["tokens_per_s"]
        if row.get("peak_bytes") and base.get("peak_bytes"):
            row["memory_vs_transformers"] = row["peak_bytes"] / base["peak_bytes"]
    result = {"shape": shape, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
              f"cpu ({args.threads} threads)", "dtype": args.dtype, "steps": args.steps, "warmup": args.warmup,
              "target_fraction": args.target_fraction, "torch": torch.__version__, "checks": checks,
              "results": rows, "memory": "CUDA: peak allocated over the step + own weights and optimizer states"
              if device.type == "cuda" else "CPU: peak RSS growth over the steps, one child process per model"}
    print_table(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


def print_table(result: dict) -> None:
    s = result["shape"]
    print(f"# Thinker step, {result['device']}, {result['dtype']}: {s['hidden']} wide, {s['layers']} layers, "
          f"{s['heads']}/{s['kv_heads']} heads, {s['ffn']} FFN, {s['vocab']} vocab, {s['rows']} x {s['seq']} tokens; "
          f"median of {result['steps']} after {result['warmup']} warm-up, interleaved")
    for name, c in result["checks"].items():
        print(f"check {name}: first loss {c['first_loss']:.6f} vs transformers {c['transformers_first_loss']:.6f} "
              f"(|diff| {c['abs_diff']:.2e}, {'ok' if c['ok'] else 'not comparable' if c['ok'] is None else 'FAIL'})")
    print("| model | tokens/s | speed vs transformers | MFU | peak memory | memory vs transformers |")
    print("|---|---|---|---|---|---|")
    for name, r in result["results"].items():
        mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "-"
        mem = f"{r['peak_bytes'] / GiB:.3f} GiB" if r.get("peak_bytes") else "-"
        ratio = f"{r['memory_vs_transformers']:.2f}x" if r.get("memory_vs_transformers") else "-"
        print(f"| {name} | {r['tokens_per_s']:,.0f} | {r['speed_vs_transformers']:.2f}x | {mfu} | {mem} | {ratio} |")


if __name__ == "__main__":
    main()
