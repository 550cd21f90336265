"""Which samples do epochs visit on shards shaped like real data? (issue 20's probes)

Re-packs demo samples into 6 shards of 3 to 298 samples (800 in all) and reads them as
training does (``OmniDataModule``, batch size 4, no workers), counting distinct samples:
one epoch of 200 batches (800 draws), and 8 epochs of 25 batches. Runs against whichever
omnitrain it imports, so the same script measures a checkout before a change
(``PYTHONPATH=/path/to/old/checkout``) and after:

    .venv/bin/python benchmarks/probe_epochs.py [--demo data/demo]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

SIZES = (298, 3, 150, 201, 97, 51)


def repack(demo_train: list[Path], out: Path, sizes=SIZES, measure=None) -> list[Path]:
    """The samples of ``demo_train`` shards (reused in turn, with new keys) in shards of ``sizes``."""
    import webdataset as wds

    from omnitrain.data.build.shard_writer import ShardWriter, write_index

    pool = list(wds.tarfile_to_samples()({"url": str(u)} for u in demo_train))
    out.mkdir(parents=True, exist_ok=True)
    shards, entries, n = [], [], 0
    for i, size in enumerate(sizes):
        path = out / f"train-{i:06d}.tar"
        writer = ShardWriter(path, measure) if measure else ShardWriter(path)
        for _ in range(size):
            sample = {k: v for k, v in pool[n % len(pool)].items() if not k.startswith("__")}
            writer.write({"__key__": f"u{n:05d}", **sample})
            n += 1
        entries.append(writer.close())
        shards.append(path)
    write_index(out, entries)
    return shards


def epochs(cfg, count: int) -> list[list[str]]:
    """The keys of ``count`` epochs, as a run from step 0 reads them."""
    from omnitrain.data.datamodule import OmniDataModule

    data = OmniDataModule(cfg)
    out, loader = [], None
    for _ in range(count):
        if hasattr(data, "trained"):  # the planned stream: the module says where each epoch starts
            loader = data.train_dataloader()
        else:  # before it: one loader whose every iteration is the next epoch
            loader = loader or data.train_dataloader()
        keys = [k for batch in loader for k in batch.keys]
        if hasattr(data, "trained"):
            data.trained += len(loader)
        out.append(keys)
    return out


def describe(keys: list[str], total: int, big_shard: str) -> dict:
    seen = Counter(keys)
    positions = [int(k.rsplit("u", 1)[1]) for k in seen if k.startswith(big_shard + ":")]
    return {"draws": len(keys), "distinct": len(seen), "twice_or_more": sum(v > 1 for v in seen.values()),
            "never": total - len(seen), "furthest_in_298_shard": max(positions, default=-1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--demo", default=None, help="demo shards to re-pack (default: made in a temp folder)")
    args = parser.parse_args()
    from omnitrain.data.build.demo import DemoSizes, make_demo
    from omnitrain.registry import build
    from omnitrain.run_config import compose_config

    with tempfile.TemporaryDirectory() as tmp:
        demo = Path(args.demo) if args.demo else Path(tmp) / "demo"
        if not args.demo:
            make_demo(demo, build("codec", compose_config(["recipe=smoke"]).codec), DemoSizes(100, 4, 4, 50))
        shards = repack(sorted(demo.glob("train-*.tar")), Path(tmp) / "uneven")
        base = ["recipe=smoke", f"data.train_shards={Path(tmp) / 'uneven'}/train-*.tar", "data.batch_size=4",
                "data.num_workers=0", "data.shuffle_buffer=256"]
        result = {}
        one = epochs(compose_config([*base, "data.epoch_batches=200"]), 1)
        result["one_epoch_of_200_batches"] = describe(one[0], sum(SIZES), str(shards[0]))
        eight = epochs(compose_config([*base, "data.epoch_batches=25"]), 8)
        result["8_epochs_of_25_batches"] = describe([k for e in eight for k in e], sum(SIZES), str(shards[0]))
        import omnitrain

        print(json.dumps({"code": omnitrain.__file__, **result}, indent=2))


if __name__ == "__main__":
    main()
