"""`make mutation`: plant each mutant of the listed modules and run that module's own tests.

A mutant the tests fail on is killed; one they pass is a survivor: a bug of that shape
would reach a user's run. Every mutant runs in a scratch copy of the working tree (one
per job, made by scripts/scratch_tree.sh), never in the checkout. To keep a run in minutes
on two cores, a parent process imports torch and Lightning once and forks a child per
mutant (a fresh `import omnitrain` from the copy, pytest in-process), and mutants on lines
no test executes (coverage, subprocesses included) are counted as survivors without
running. Known-equivalent mutants are listed with their reason in equivalent.toml.

    python scripts/mutation/run.py [--only SUBSTR] [--max-per-module N] [--jobs N] [--out F]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import shutil
import signal
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(HERE.parent)]
from mutants import Mutant, mutants  # noqa: E402
from tree_coverage import covered, remove_tree, scratch_tree  # noqa: E402


@dataclass
class Target:
    module: str
    tests: list[str]
    args: list[str] = field(default_factory=list)


@dataclass
class Outcome:
    ident: str
    status: str  # killed | survived | timeout | not-covered | equivalent
    seconds: float = 0.0
    before: str = ""
    after: str = ""
    why: str = ""


def load_targets(only: str | None) -> list[Target]:
    spec = tomllib.loads((HERE / "targets.toml").read_text())
    targets = []
    for group in spec["target"]:
        for module in group["modules"]:
            if only is None or any(part in module for part in only.split(",")):
                targets.append(Target(module, group["tests"], group.get("args", [])))
    return targets


def load_equivalent() -> dict[str, str]:
    spec = tomllib.loads((HERE / "equivalent.toml").read_text())
    return {m["id"]: m["why"] for m in spec.get("mutant", [])}


def pytest_args(target: Target) -> list[str]:
    return [*target.tests, *target.args, "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
            "--timeout=300"]


def covered_lines(tree: Path, target: Target) -> tuple[set[int], float]:
    """Lines of the module that its tests execute (subprocesses too), and the tests' time."""
    start = time.perf_counter()
    run, files = covered(tree, pytest_args(target), f"include = {tree}/{target.module}")
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        sys.exit(f"{target.module}: its tests fail before any mutant ({' '.join(target.tests)}):\n"
                 f"{run.stdout[-3000:]}{run.stderr[-2000:]}")
    lines = set().union(*files.values())
    return statement_lines((tree / target.module).read_text(), lines), seconds


def statement_lines(source: str, executed: set[int]) -> set[int]:
    """Coverage names a statement by its first line: add the rest of an executed simple
    statement (`return Batch(...)` over ten lines) and of a compound one's header."""
    out = set(executed)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.stmt) and node.lineno in executed:
            body = getattr(node, "body", None)
            last = body[0].lineno - 1 if isinstance(body, list) and body else node.end_lineno
            out.update(range(node.lineno, max(node.lineno, last) + 1))
    return out


def _child(tree: Path, target: Target, log: Path) -> None:
    """In the forked child: import the copy's omnitrain, run the tests, exit with pytest's code."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler removes the trees
    os.setsid()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.chdir(tree)
    sys.path[:0] = [str(tree / ".paths"), str(tree)]
    os.environ["PYTHONPATH"] = str(tree / ".paths")
    sys.dont_write_bytecode = True
    import pytest

    code = pytest.main(pytest_args(target))
    sys.stdout.flush()
    os._exit(int(code))


def run_mutants(trees: list[Path], target: Target, todo: list[Mutant], limit: float) -> list[Outcome]:
    """Run up to len(trees) mutants at once, each in its own tree; the file is restored after."""
    free, running, done = list(trees), {}, []
    original = (ROOT / target.module).read_text()
    queue = list(todo)
    while queue or running:
        while queue and free:
            mutant, tree = queue.pop(0), free.pop()
            path = tree / target.module
            shutil.rmtree(path.parent / "__pycache__", ignore_errors=True)
            path.write_text(mutant.source)
            pid = os.fork()
            if pid == 0:
                _child(tree, target, Path(f"{tree}.log"))
            running[pid] = (mutant, tree, time.perf_counter())
        time.sleep(0.05)
        for pid, (mutant, tree, start) in list(running.items()):
            waited, status = os.waitpid(pid, os.WNOHANG)
            elapsed = time.perf_counter() - start
            if waited == 0 and elapsed < limit:
                continue
            if waited == 0:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                verdict = "timeout"
            else:
                verdict = "survived" if os.waitstatus_to_exitcode(status) == 0 else "killed"
            (tree / target.module).write_text(original)
            del running[pid]
            free.append(tree)
            done.append(Outcome(mutant.ident, verdict, round(elapsed, 1), mutant.before, mutant.after))
            print(f"  {verdict:9s} {elapsed:5.1f}s  {mutant.ident}  {mutant.before[:50]!r} -> {mutant.after[:50]!r}",
                  flush=True)
    return done


def summarize(results: dict[str, list[Outcome]]) -> str:
    rows = ["| module | mutants | killed | survived | not covered | equivalent | score |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    totals = [0, 0, 0, 0, 0]
    for module, outcomes in results.items():
        n = len(outcomes)
        killed = sum(o.status in ("killed", "timeout") for o in outcomes)
        survived = sum(o.status == "survived" for o in outcomes)
        uncovered = sum(o.status == "not-covered" for o in outcomes)
        equivalent = sum(o.status == "equivalent" for o in outcomes)
        for i, v in enumerate((n, killed, survived, uncovered, equivalent)):
            totals[i] += v
        score = killed / max(1, n - equivalent)
        rows.append(f"| {module} | {n} | {killed} | {survived} | {uncovered} | {equivalent} | {score:.0%} |")
    n, killed, survived, uncovered, equivalent = totals
    rows.append(f"| **all** | {n} | {killed} | {survived} | {uncovered} | {equivalent} | "
                f"{killed / max(1, n - equivalent):.0%} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="modules whose path contains this (comma-separated: any of these)")
    ap.add_argument("--max-per-module", type=int, default=40,
                    help="a seeded sample of each module's mutants (0 = all)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "runs/mutation/report.json")
    opts = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    import lightning  # noqa: F401  (imported once here, shared by every forked child)
    import numpy  # noqa: F401
    import torch  # noqa: F401

    targets = load_targets(opts.only)
    if not targets:
        sys.exit(f"no module in {HERE / 'targets.toml'} matches --only {opts.only!r}")
    equivalent = load_equivalent()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped (SIGTERM): scratch trees removed"))
    trees = [scratch_tree(Path(f"/tmp/omnitrain-mutation-{os.getpid()}-{i}")) for i in range(opts.jobs)]
    results: dict[str, list[Outcome]] = {}
    try:
        for target in targets:
            every = mutants((ROOT / target.module).read_text(), target.module)
            chosen = every
            if opts.max_per_module and len(every) > opts.max_per_module:
                chosen = sorted(random.Random(f"{opts.seed}:{target.module}").sample(every, opts.max_per_module),
                                key=lambda m: (m.line, m.col, m.kind))
            lines, seconds = covered_lines(trees[0], target)
            print(f"{target.module}: {len(chosen)} of {len(every)} mutants; tests {seconds:.0f}s, "
                  f"{len(lines)} lines covered", flush=True)
            outcomes: list[Outcome] = []
            todo = []
            for m in chosen:
                if m.ident in equivalent:
                    outcomes.append(Outcome(m.ident, "equivalent", before=m.before, after=m.after,
                                            why=equivalent[m.ident]))
                elif m.line not in lines:
                    outcomes.append(Outcome(m.ident, "not-covered", before=m.before, after=m.after))
                else:
                    todo.append(m)
            limit = max(60.0, 4 * seconds)
            control = Mutant(target.module, 0, 0, "control", "", "", (ROOT / target.module).read_text())
            if run_mutants(trees[:1], target, [control], limit)[0].status != "survived":
                sys.exit(f"{target.module}: the unmutated module fails its tests in a forked child: "
                         f"see {trees[0]}.log")
            outcomes += run_mutants(trees, target, todo, limit)
            results[target.module] = sorted(outcomes, key=lambda o: o.ident)
    finally:
        for tree in trees:
            remove_tree(tree)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps({m: [o.__dict__ for o in os_] for m, os_ in results.items()}, indent=1))
    print("\n" + summarize(results))
    survivors = [o for os_ in results.values() for o in os_ if o.status in ("survived", "not-covered")]
    if survivors:
        print("\nsurvivors (kill them with a test, or list them in scripts/mutation/equivalent.toml with why):")
        for o in survivors:
            print(f"  {o.status:11s} {o.ident}  {o.before[:60]!r} -> {o.after[:60]!r}")
    print(f"\nreport: {opts.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
