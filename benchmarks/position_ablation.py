"""TMRoPE vs M-RoPE vs 1D RoPE (and TMRoPE without interleaving) on the demo task.

Trains each ``recipes/ablate_position_*.yaml`` (same data, seed, model and steps;
only the position slot differs), exports it, and prints a markdown table of the final
losses and the held-out accuracy.

    .venv/bin/omnitrain data demo data/demo        # once
    .venv/bin/python benchmarks/position_ablation.py [--steps 600] [--only tmrope,rope1d]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from omnitrain.run_summary import summarise

SCHEMES = ["tmrope", "tmrope_nointerleave", "mrope", "rope1d"]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def heldout_accuracy(bundle: Path, manifest: Path) -> float:
    from omnitrain.inference.generate import Generator, user_turn

    gen = Generator(bundle)
    rows = [json.loads(x) for x in manifest.read_text().splitlines() if x.strip()]
    correct = 0
    for row in rows:
        media = {k: str(manifest.parent / row[k]) for k in ("audio", "image", "video") if row.get(k)}
        reply = gen(user_turn(row["text"], media.get("audio"), media.get("image"), media.get("video")))
        correct += reply.text.strip() == row["expected"]
    return correct / len(rows)


def run_dir_of(name: str) -> Path:
    return Path("runs") / f"ablate_position_{name}"


def _final(run_dir: Path, metric: str) -> float:
    """The last logged value (validation runs only a few times; no averaging)."""
    from omnitrain.run_summary import read_metrics

    return sorted(read_metrics(run_dir)[metric])[-1][1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--only", default=",".join(SCHEMES))
    parser.add_argument("--data", default="data/demo")
    args = parser.parse_args()
    omnitrain = str(Path(sys.executable).with_name("omnitrain"))
    rows = []
    for name in args.only.split(","):
        run_dir = run_dir_of(name)
        run([omnitrain, "train", f"recipe=ablate_position_{name}", f"trainer.max_steps={args.steps}",
             f"run_dir={run_dir}", "logger=csv"])
        run([omnitrain, "export", str(run_dir / "checkpoints" / "last.ckpt"), str(run_dir / "bundle")])
        metrics = {m.name: m for m in summarise(run_dir)}
        acc = heldout_accuracy(run_dir / "bundle", Path(args.data) / "heldout" / "manifest.jsonl")
        rows.append((name, metrics, acc))
    print(f"\n{args.steps} steps each, seed and data identical; train = mean of the last 5 logged values\n")
    print("| position | train text | train codec | train flow | val text | val codec | val flow | held-out |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m, acc in rows:
        vals = [m[k].last for k in ("train/text", "train/codec", "train/flow")]
        vals += [_final(run_dir_of(name), k) for k in ("val/text", "val/codec", "val/flow")]
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in vals) + f" | {acc:.0%} |")


if __name__ == "__main__":
    main()
