"""``omnitrain train -m key=a,b other=x,y``: Hydra-style multirun sweeps on one machine.

Every combination (the cartesian product of the comma-separated values, or ``range(...)``)
is composed and validated before the first run starts, so a typo in the last
combination costs nothing. Then the runs go one after another, each in a fresh process
(``python -m omnitrain train ...``: a run that fails or crashes does not take the sweep
down) and in its own run_dir, ``<run_dir>/<i>-<swept overrides>``. A table at the end
gives each run's exit status and its first and last ``train/loss``.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ValueType
from hydra.errors import HydraException

from omnitrain.config.validate import ConfigError
from omnitrain.run_config import compose_config
from omnitrain.run_summary import read_metrics

LOSS = "train/loss"


@dataclass
class SweepRun:
    index: int
    swept: list[str]       # the overrides this run differs by, e.g. ["position=tmrope"]
    overrides: list[str]   # everything passed to ``omnitrain train``, run_dir last
    run_dir: str
    exit_code: int | None = None  # None: not run (the sweep was interrupted)

    @property
    def label(self) -> str:
        return ",".join(self.swept)


def expand(overrides: list[str]) -> list[tuple[list[str], list[str]]]:
    """(overrides of one run, its swept overrides) for every combination, in Hydra's
    order (the last swept key varies fastest). Raises ``ConfigError`` on a bad sweep."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise ConfigError(f"cannot parse overrides {list(overrides)}: {exc}") from exc
    axes: list[list[tuple[str, bool]]] = []
    for text, ov in zip(overrides, parsed, strict=True):
        if not ov.is_sweep_override():
            axes.append([(text, False)])
            continue
        if ov.value_type == ValueType.GLOB_CHOICE_SWEEP:
            raise ConfigError(f"'{text}': glob(...) sweeps are not supported; list the values: key=a,b,c")
        key = ov.get_key_element()
        # each value as written (quotes kept), so it parses again
        axes.append([(f"{key}={value}", True) for value in ov.sweep_string_iterator()])
    return [([t for t, _ in combo], [t for t, swept in combo if swept]) for combo in itertools.product(*axes)]


def _dir_name(index: int, swept: list[str]) -> str:
    safe = re.sub(r"[^\w.,=+-]", "_", ",".join(swept))[:100]
    return f"{index}-{safe}" if safe else str(index)


def _quoted(value: str) -> str:
    """A Hydra override value that may hold '=' or ',' (quoted, as its grammar asks)."""
    return f'"{value}"' if "'" in value else f"'{value}'"


def plan_runs(overrides: list[str]) -> list[SweepRun]:
    """Every run of the sweep with its run_dir, each config composed and validated."""
    runs = []
    for index, (combo, swept) in enumerate(expand(overrides)):
        own = [o for o in combo if o.split("=", 1)[0].lstrip("+") == "run_dir"]
        rest = [o for o in combo if o not in own]
        base = own[-1].split("=", 1)[1] if own else str(compose_config(rest).run_dir)
        run_dir = str(Path(base) / _dir_name(index, swept))
        final = [*rest, f"run_dir={_quoted(run_dir)}"]
        try:
            compose_config(final)
        except ConfigError as exc:
            raise ConfigError(f"sweep run {index} ({','.join(swept) or 'no swept keys'}): {exc}") from exc
        runs.append(SweepRun(index, swept, final, run_dir))
    return runs


def first_last_loss(run_dir: str) -> tuple[float | None, float | None]:
    """The first and last logged ``train/loss`` of a run (its csv/metrics.csv)."""
    try:
        points = read_metrics(Path(run_dir)).get(LOSS)
    except (FileNotFoundError, ValueError):
        return None, None
    if not points:
        return None, None
    values = [v for _, v in sorted(points, key=lambda p: p[0])]
    return values[0], values[-1]


def format_table(runs: list[SweepRun]) -> str:
    def num(x: float | None) -> str:
        return "-" if x is None else f"{x:.5g}"

    rows = [("run", "overrides", "exit", f"first {LOSS}", f"last {LOSS}", "run_dir")]
    for run in runs:
        first, last = first_last_loss(run.run_dir)
        status = "not run" if run.exit_code is None else str(run.exit_code)
        rows.append((str(run.index), run.label or "-", status, num(first), num(last), run.run_dir))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def run_sweep(overrides: list[str]) -> int:
    """Run every combination; 0 if all succeeded, 1 if any failed, 130 if interrupted."""
    runs = plan_runs(overrides)  # every config error surfaces here, before the first run
    print(f"sweep: {len(runs)} run(s), validated: " + "; ".join(r.label or "-" for r in runs), flush=True)
    interrupted = False
    for run in runs:
        print(f"\n[sweep {run.index + 1}/{len(runs)}] {run.label or '-'} -> {run.run_dir}", flush=True)
        try:
            run.exit_code = subprocess.run([sys.executable, "-m", "omnitrain", "train", *run.overrides]).returncode
        except KeyboardInterrupt:
            run.exit_code, interrupted = 130, True
            break
    failed = [r for r in runs if r.exit_code != 0]
    print(f"\nsweep summary ({len(runs) - len(failed)}/{len(runs)} succeeded; losses from <run_dir>/csv/metrics.csv):")
    print(format_table(runs))
    if interrupted:
        return 130
    return 1 if failed else 0
