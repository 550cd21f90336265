"""Samples per second through the training loader a run uses (``OmniDataModule``'s, with
its workers), on the shards of a config. Run it from two checkouts in one session to
compare them (the loader before and after a change):

    .venv/bin/python benchmarks/loader_throughput.py --batches 60 recipe=demo data.num_workers=2
    PYTHONPATH=/path/to/other/checkout .venv/bin/python benchmarks/loader_throughput.py ...

Prints one JSON line: samples/s over ``--batches`` batches after ``--warmup`` batches
(workers started, buffers full), and the distinct samples among them.
"""

from __future__ import annotations

import argparse
import json
import time

from omnitrain.data.datamodule import OmniDataModule
from omnitrain.run_config import compose_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    cfg = compose_config(args.overrides)
    loader = OmniDataModule(cfg).train_dataloader()
    it = iter(loader)
    for _ in range(args.warmup):
        next(it)
    t0, keys = time.perf_counter(), []
    for _ in range(args.batches):
        keys += next(it).keys
    seconds = time.perf_counter() - t0
    import omnitrain

    print(json.dumps({"code": omnitrain.__file__, "samples_per_s": round(len(keys) / seconds, 1),
                      "samples": len(keys), "distinct": len(set(keys)), "seconds": round(seconds, 2)}))


if __name__ == "__main__":
    main()
