"""Peak host memory of exporting a sharded checkpoint: ``omnitrain export`` (streaming)
against consolidating it whole first (DeepSpeed's ``get_fp32_state_dict_from_zero_checkpoint``
/ torch's ``dcp_to_torch_save``), for a few-hundred-MB model trained one step on W CPU
processes.

    .venv/bin/python benchmarks/export_peak_rss.py --world 4 --strategy deepspeed_zero3

Each measurement runs in a fresh process and reports its own peak RSS (ru_maxrss); a
process that only imports the same modules gives the baseline, so the memory the
export itself needs is the difference. The issue's bound: peak below
1.5 x (largest shard file) + (largest tensor).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 2**20
# ~185M parameters (740 MB in fp32): a Thinker of 8 layers x 1024 wide, a 32k vocabulary
MODEL = ["thinker.hidden_size=1024", "thinker.layers=8", "thinker.heads=16", "thinker.kv_heads=4",
         "thinker.ffn_dim=4096", "tokenizer.vocab_size=32000"]


def run(cmd: list[str], **kw) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "WANDB_MODE": "offline"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, **kw)
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def peak_rss(code: str) -> int:
    """Bytes of peak RSS of a fresh interpreter running ``code``."""
    wrapped = code + "\nimport resource\nprint('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    out = run([sys.executable, "-c", wrapped])
    return int(out.split("MAXRSS")[-1].split()[0]) * 1024


def make_checkpoint(work: Path, world: int, strategy: str) -> Path:
    data = work / "data"
    if not (data / "index.json").exists():
        run([sys.executable, "-m", "omnitrain", "data", "demo", str(data), "--train", "32", "--val", "8",
             "--heldout", "0", "--per-shard", "16"])
    run_dir = work / f"{strategy}_w{world}"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world),
             "-m", "omnitrain", "train", "recipe=smoke", *MODEL, f"data.train_shards={data}/train-*.tar",
             f"data.val_shards={data}/val-*.tar", f"run_dir={run_dir}", "logger=csv",
             f"trainer.devices={world}", f"strategy={strategy}", "trainer.max_steps=1",
             "trainer.limit_val_batches=0", "data.batch_size=1"], timeout=1800)
    return ckpt


def shard_files(ckpt: Path) -> list[Path]:
    return sorted(ckpt.glob("checkpoint/*_optim_states.pt")) or sorted(ckpt.glob("*.distcp"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=int, default=4)
    ap.add_argument("--strategy", default="deepspeed_zero3", choices=["deepspeed_zero2", "deepspeed_zero3", "fsdp"])
    ap.add_argument("--workdir", default="/tmp/omnitrain_export_bench")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = make_checkpoint(work, args.world, args.strategy)

    from omnitrain.checkpoints import open_checkpoint

    specs = open_checkpoint(ckpt).tensors()
    params = sum(s.numel for s in specs.values())
    largest_tensor = max(s.numel * 4 for s in specs.values())
    largest_shard = max(p.stat().st_size for p in shard_files(ckpt))
    bound = 1.5 * largest_shard + largest_tensor

    imports = "import omnitrain.bundle, omnitrain.cli, deepspeed, torch.distributed.checkpoint"
    baseline = peak_rss(imports)
    out = work / f"bundle_{args.strategy}_w{args.world}"
    ours = peak_rss(f"{imports}\nfrom omnitrain.cli import main\nassert main(['export', '{ckpt}', '{out}']) == 0")
    if args.strategy.startswith("deepspeed"):
        whole = textwrap.dedent(f"""
            {imports}
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
            from safetensors.torch import save_file
            sd = get_fp32_state_dict_from_zero_checkpoint('{ckpt}', tag='checkpoint')
            save_file({{k: v.contiguous() for k, v in sd.items()}}, '{work}/whole.safetensors')""")
        whole_name = "DeepSpeed get_fp32_state_dict_from_zero_checkpoint + save_file"
    else:
        whole = textwrap.dedent(f"""
            {imports}
            from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
            dcp_to_torch_save('{ckpt}', '{work}/whole.pt')""")
        whole_name = "torch dcp_to_torch_save"
    theirs = peak_rss(whole)
    result = {
        "strategy": args.strategy, "world": args.world, "parameters": params,
        "model_fp32_MiB": round(params * 4 / MiB), "largest_shard_MiB": round(largest_shard / MiB),
        "largest_tensor_MiB": round(largest_tensor / MiB), "bound_MiB": round(bound / MiB),
        "baseline_imports_MiB": round(baseline / MiB),
        "omnitrain_export_peak_MiB": round(ours / MiB),
        "whole_model_peak_MiB": round(theirs / MiB), "whole_model_method": whole_name,
        "export_below_bound": ours < bound,
        "export_over_baseline_MiB": round((ours - baseline) / MiB),
        "whole_over_baseline_MiB": round((theirs - baseline) / MiB),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
