"""Does the data pipeline keep up with training? Measured side by side in one session.

For each kind of demo sample (audio only, image, video with its audio track) this
writes demo shards of that kind alone, then streams them through the real training
pipeline (tar reading, decoding, feature extraction, position ids, collation) with
2 forkserver workers and counts samples per second. It then times training steps of
the demo model on a demo batch and reports, per kind, how many times faster the
pipeline delivers samples than training consumes them. Also reports padding waste
of one-sample-per-row batching vs token-budget packing on the mixed demo data.

    .venv/bin/python benchmarks/data_throughput.py [--batches 30]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from omnitrain.data.budget import padding_waste
from omnitrain.data.build.demo import DemoSizes, make_demo
from omnitrain.data.datamodule import OmniDataModule
from omnitrain.data.pipeline import make_pipeline
from omnitrain.registry import build
from omnitrain.run_config import compose_config


def pipeline_rate(cfg, batches: int) -> float:
    """Samples/s through the training loader of a run (its 2 forkserver workers)."""
    loader = OmniDataModule(cfg.replace(data=dataclasses.replace(cfg.data, num_workers=2,
                                                                 prefetch_factor=4))).train_dataloader()
    it = iter(loader)
    for _ in range(4):  # workers started, buffers warm
        next(it)
    t0, samples = time.perf_counter(), 0
    for _ in range(batches):
        samples += len(next(it).keys)
    rate = samples / (time.perf_counter() - t0)
    del it
    return rate


def training_rate(cfg, steps: int) -> float:
    from omnitrain.training.stages.module import OmniModule

    batch = next(iter(make_pipeline(cfg, "train", 256)))
    module = OmniModule(cfg)
    module.configure_model()
    opt = torch.optim.AdamW(module.model.parameters(), lr=1e-4)
    times = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad()
        module.model(batch)["loss"].backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    step = sorted(times[2:])[len(times[2:]) // 2]
    return len(batch.keys) / step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args()
    base = compose_config(["recipe=demo"])
    codec = build("codec", base.codec)
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("audio", "image", "video"):
            out = Path(tmp) / kind
            make_demo(out, codec, DemoSizes(train=320, val=8, heldout=4, per_shard=80), kinds=(kind,))
            cfg = compose_config(["recipe=demo", f"data.train_shards={out}/train-*.tar"])
            result[f"pipeline_{kind}_samples_per_s"] = pipeline_rate(cfg, args.batches)
        torch.set_num_threads(2)
        consumed = training_rate(base, 10)
        result["training_samples_per_s"] = consumed
        for kind in ("audio", "image", "video"):
            result[f"headroom_{kind}"] = result[f"pipeline_{kind}_samples_per_s"] / consumed
    plain = list(make_pipeline(compose_config(["recipe=demo"]), "train", 256))  # one pass each
    packed_cfg = compose_config(["recipe=demo", "data.batching=tokens",
                                 "data.pack_length=512", "data.max_tokens=512", "data.rows_per_batch=4"])
    packed = list(make_pipeline(packed_cfg, "train", 256))
    for name, batches in (("padding_waste_one_per_row", plain), ("padding_waste_token_budget", packed)):
        grid = sum(b.input_ids.numel() for b in batches)
        result[name] = 1 - sum(b.num_tokens for b in batches) / grid
    result["mean_batch_waste_token_budget"] = sum(map(padding_waste, packed)) / len(packed)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
