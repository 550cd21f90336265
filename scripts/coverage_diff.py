"""Lines of omnitrain/ and plugins/ that some tests executed before a change and no longer do.

When tests are merged or shrunk to save suite time (issue 26), run the old tests at the old
commit and the new ones now, each under coverage (subprocesses included), and compare:

    python scripts/coverage_diff.py --before 04a94b9 \\
        --old "tests/test_recipes.py -k omni3b_full" --new "tests/test_recipes.py -k omni7b_full"

Exit 1 and list the lines when the new tests miss any line the old ones ran.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
import subprocess
import sys
from pathlib import Path

from tree_coverage import covered, remove_tree, scratch_tree


def measured(tree: Path, pytest_args: list[str]) -> dict[str, set[int]]:
    """{path relative to the tree: executed lines of omnitrain/ and plugins/} for one run."""
    run, files = covered(tree, ["-q", "-p", "no:cacheprovider", *pytest_args],
                         f"source = {tree}/omnitrain,{tree}/plugins")
    print(f"{tree}: pytest {' '.join(pytest_args)}\n  {run.stdout.strip().splitlines()[-1] if run.stdout else ''}")
    if run.returncode != 0:
        sys.exit(f"the tests failed in {tree}:\n{run.stdout[-3000:]}{run.stderr[-2000:]}")
    return files


def moved(name: str, lines: set[int], trees: list[Path]) -> set[int]:
    """Old line numbers as they are in the new file (a line the change rewrote is dropped)."""
    before, after = ((tree / name).read_text().splitlines() if (tree / name).exists() else [] for tree in trees)
    if before == after:
        return lines
    where: dict[int, int] = {}
    for a, b, size in difflib.SequenceMatcher(None, before, after, autojunk=False).get_matching_blocks():
        where.update({a + i + 1: b + i + 1 for i in range(size)})
    return {where[line] for line in lines if line in where}


def tree_at(ref: str | None, path: Path) -> Path:
    """A scratch copy of the checkout (ref None: with its uncommitted edits) or of a commit."""
    scratch_tree(path)
    if ref is not None:
        subprocess.run(["git", "-C", str(path), "checkout", "-q", "--force", ref], check=True)
        subprocess.run(["git", "-C", str(path), "clean", "-qfd", "-e", ".paths"], check=True)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the commit the old tests ran at")
    ap.add_argument("--old", required=True, help="pytest arguments of the old tests (one string)")
    ap.add_argument("--new", required=True, help="pytest arguments of the new tests, in the checkout as it is")
    opts = ap.parse_args(argv)
    trees = [tree_at(opts.before, Path(f"/tmp/coverage-diff-{os.getpid()}-old")),
             tree_at(None, Path(f"/tmp/coverage-diff-{os.getpid()}-new"))]
    try:
        old = measured(trees[0], shlex.split(opts.old))
        new = measured(trees[1], shlex.split(opts.new))
        old = {name: moved(name, lines, trees) for name, lines in old.items()}
    finally:
        for tree in trees:
            remove_tree(tree)
    lost = {name: sorted(lines - new.get(name, set())) for name, lines in old.items()}
    lost = {name: lines for name, lines in lost.items() if lines}
    gained = sum(len(lines - old.get(name, set())) for name, lines in new.items())
    print(f"old: {sum(map(len, old.values()))} lines, new: {sum(map(len, new.values()))} lines; "
          f"lost {sum(map(len, lost.values()))}, gained {gained}")
    for name, lines in sorted(lost.items()):
        print(f"  lost {name}: {lines}")
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
