"""Overrides omnitrain reads before Hydra composes: ``recipe=path/to/file.yaml`` (a recipe
of your own, no ``$OMNITRAIN_RECIPE_PATH`` needed) and ``hydra.*`` settings, which a
composed config cannot honour (omnitrain runs no Hydra app), so they are refused with
what to use instead rather than silently ignored."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser

from omnitrain.config.suggest import suggest
from omnitrain.config.validate import ConfigError

_SWEEP = "Sweep with `omnitrain train -m key=a,b` (runs one after another, each in its own process)."
_LOGS = "Metrics go to logger=<csv|offline|online>; run logs to <run_dir>."
_HYDRA_INSTEAD = {  # key prefix: what to do instead ({value}: the override's value)
    "hydra.run.dir": "Use run_dir={value} instead.",
    "hydra.sweep": "Use run_dir=<folder> with `omnitrain train -m ...`: run i goes to <folder>/<i>-<overrides>.",
    "hydra.job.chdir": "omnitrain never changes the working folder: relative paths are relative to where you "
                       "start it, and every output of a run goes to run_dir=<folder>.",
    "hydra.job.name": "Use name={value} instead (run_dir defaults to runs/<name>).",
    "hydra/launcher": _SWEEP + " For clusters see scripts/launch/ (SLURM, torchrun).",
    "hydra.launcher": _SWEEP,
    "hydra/sweeper": _SWEEP,
    "hydra.sweeper": _SWEEP,
    "hydra/job_logging": _LOGS,
    "hydra/hydra_logging": _LOGS,
    "hydra.verbose": _LOGS,
}


def hydra_problems(overrides: list[str]) -> list[str]:
    """One message per ``hydra.*`` / ``hydra/...`` override: why it is refused, what to use."""
    problems = []
    for text in overrides:
        key, _, value = text.partition("=")
        key = key.lstrip("+~")
        if key != "hydra" and not key.startswith(("hydra.", "hydra/")):
            continue
        instead = next((v for k, v in _HYDRA_INSTEAD.items() if key == k or key.startswith(k + ".")),
                       "Use omnitrain's own setting instead (`omnitrain train --help` lists them).")
        problems.append(f"'{text}' is refused: omnitrain composes its config with Hydra but runs no Hydra app, "
                        f"so hydra.* settings would have no effect. {instead.format(value=value or '<folder>')}")
    return problems


def is_recipe_file(value: str) -> bool:
    """``recipe=<value>`` names a file (not a recipe by name): a path or a .yaml/.yml name."""
    return value.endswith((".yaml", ".yml")) or "/" in value or "\\" in value


def recipe_alias(path: Path) -> str:
    """The name a recipe file is registered under: its stem and a hash of where it lives."""
    stem = re.sub(r"\W", "_", path.stem)
    return f"file_{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"


def recipe_file_overrides(overrides: list[str], named: dict[str, Path]) -> tuple[list[str], dict[str, Path]]:
    """``recipe=path/to/file.yaml`` rewritten to ``recipe=<alias>``, and {alias: file}.
    Raises ``ConfigError`` when the file does not exist."""
    out, files = [], {}
    parsed = OverridesParser.create().parse_overrides(overrides)
    for text, ov in zip(overrides, parsed, strict=True):
        if ov.key_or_group != "recipe" or ov.is_sweep_override() or ov.is_delete():
            out.append(text)
            continue
        value = str(ov.value())
        if value in named or not is_recipe_file(value):
            out.append(text)
            continue
        path = Path(value).expanduser().resolve()
        if not path.is_file():
            stem = Path(value).stem
            hint = f" (did you mean recipe={stem}?)" if stem in named else suggest(stem, named)
            raise ConfigError(f"recipe file '{value}' does not exist (looked at {path}){hint}. Give a path "
                              f"to a recipe YAML, or a recipe by name: {', '.join(sorted(named))}")
        alias = recipe_alias(path)
        files[alias] = path
        out.append(f"{ov.get_key_element()}={alias}")
    return out, files
