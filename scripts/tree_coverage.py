"""Scratch copies of the tree and line coverage of a pytest run in one: what `make mutation`
(scripts/mutation/run.py) and scripts/coverage_diff.py both need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def scratch_tree(path: Path) -> Path:
    """A copy of the checkout with its uncommitted edits (scripts/scratch_tree.sh), whose
    `.paths` folder, put on PYTHONPATH, makes imports and subprocesses use the copy."""
    out = subprocess.run(["bash", str(ROOT / "scripts/scratch_tree.sh"), str(path)],
                         check=True, capture_output=True, text=True).stdout
    assert out.startswith("export PYTHONPATH="), out
    return path


def remove_tree(path: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], capture_output=True)


def covered(tree: Path, pytest_args: list[str], measure: str) -> tuple[subprocess.CompletedProcess, dict[str, set[int]]]:
    """Run pytest in ``tree`` under coverage (subprocesses, forks and ``os._exit`` too);
    ``measure`` is the rc line that says what ("include = FILE" or "source = DIRS").
    Returns the run and {path relative to the tree: executed lines}, empty if it failed."""
    data = Path(tempfile.mkdtemp(prefix="tree-coverage-"))
    rc = data / "rc"
    rc.write_text(f"[run]\nparallel = true\npatch =\n    subprocess\n    _exit\n    fork\n"
                  f"data_file = {data}/cov\n{measure}\n")
    env = {**os.environ, "PYTHONPATH": str(tree / ".paths"), "COVERAGE_RCFILE": str(rc),
           "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([sys.executable, "-m", "coverage", "run", f"--rcfile={rc}", "-m", "pytest", *pytest_args],
                         cwd=tree, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        return run, {}
    for step in (["combine", "-q"], ["json", "-q", "-o", str(data / "report.json")]):
        subprocess.run([sys.executable, "-m", "coverage", *step, f"--rcfile={rc}"], cwd=tree, env=env,
                       check=True, capture_output=True)
    files = json.loads((data / "report.json").read_text())["files"]
    return run, {str(Path(name).resolve().relative_to(tree.resolve())) if Path(name).is_absolute() else name:
                 set(info["executed_lines"]) for name, info in files.items()}
