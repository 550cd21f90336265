"""How long composing a run config takes, with the per-process caches of config files
(``omnitrain.config.yaml_cache``, the size tables, the ConfigStore registrations, the
section schemas) against the same composes with those caches emptied before each one,
which is what every compose did before them. The two alternate in one process (a busy
machine slows both alike); reported: the median of each and their ratio.

    .venv/bin/python benchmarks/compose_config.py                     # 20 rounds, 3 configs
    .venv/bin/python benchmarks/compose_config.py --rounds 40 --json compose.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from omnitrain.config import compose, schema, sizes, yaml_cache
from omnitrain.run_config import compose_config

CONFIGS = (["recipe=smoke"], ["recipe=omni3b_long"], ["recipe=omni7b_full", "size=tiny", "trainer=cpu"])


def empty_caches() -> None:
    yaml_cache._PARSED.clear()
    sizes._TABLES.clear()
    sizes._STORED.clear()
    compose._STORED_RECIPES.clear()
    schema._SCHEMAS_STORED = ()
    schema._schema_node.cache_clear()


def timed(overrides: list[str], cold: bool) -> float:
    if cold:
        empty_caches()
    start = time.perf_counter()
    compose_config(overrides)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    for overrides in CONFIGS:  # imports, plugin loading and Hydra's own first-time work
        compose_config(overrides)
    results = {}
    for overrides in CONFIGS:
        cached, uncached = [], []
        for _ in range(args.rounds):
            uncached.append(timed(overrides, cold=True))
            cached.append(timed(overrides, cold=False))
        row = {"uncached_s": statistics.median(uncached), "cached_s": statistics.median(cached)}
        row["speedup"] = row["uncached_s"] / row["cached_s"]
        results[" ".join(overrides)] = row
        print(f"{' '.join(overrides):45s} uncached {row['uncached_s']:.3f} s  cached {row['cached_s']:.3f} s  "
              f"x{row['speedup']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
