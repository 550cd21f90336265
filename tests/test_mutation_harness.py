"""`make mutation`'s mutant generator: each mutant is one small edit that still parses, and the
text a test matches on (docstrings, raise/assert messages, logging) is left alone."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts" / "mutation"))
from mutants import mutants  # noqa: E402

SOURCE = '''"""Module docstring 1 + 2."""
import logging

log = logging.getLogger(__name__)


def mean(xs: list[float], floor: int = 0) -> float:
    """Docstring with 3 < 4."""
    if not xs or len(xs) <= floor:
        raise ValueError(f"need more than {floor + 1} values")
    total = 0.0
    for x in xs:
        total += abs(x)
    log.info("mean of %d", len(xs) - 1)
    xs.sort()
    return total / len(xs)
'''


def kinds_at(found, line):
    return sorted(m.kind for m in found if m.line == line)


def test_each_mutant_is_one_edit_that_parses_and_changes_the_source():
    found = mutants(SOURCE, "m.py")
    assert found, "no mutants"
    for m in found:
        ast.parse(m.source)
        assert m.source != SOURCE
        # the edit is local: everything outside the line's span is untouched
        before, after = SOURCE.splitlines(), m.source.splitlines()
        changed = [i + 1 for i, (a, b) in enumerate(zip(before, after)) if a != b]
        assert changed and min(changed) == m.line, (m.ident, changed)
    assert len({m.ident for m in found}) == len(found), "ids must be unique"


def test_the_operators_expected_on_each_line():
    found = mutants(SOURCE, "m.py")
    assert kinds_at(found, 9) == ["boolop:Or", "compare0:LtE", "unary:Not"]
    assert kinds_at(found, 11) == ["const:0.0->1.0"]
    assert kinds_at(found, 13) == ["augop:Add", "delete"]
    assert any("total -= abs(x)" in m.source for m in found)  # an augmented call keeps its parentheses
    assert kinds_at(found, 15) == ["delete"]  # a bare call: deleted
    assert kinds_at(found, 16) == ["binop:Div", "return:None"]
    swapped = next(m for m in found if m.kind == "binop:Div")
    assert "return (total * len(xs))" in swapped.source


def test_messages_docstrings_annotations_and_logging_are_not_mutated():
    found = mutants(SOURCE, "m.py")
    lines = {m.line for m in found}
    assert not lines & {1, 8, 10, 14}, sorted(lines)
    assert kinds_at(found, 7) == ["const:0->1"]  # a default value is behaviour


def test_an_executed_statement_covers_all_its_lines_but_not_its_body():
    from run import statement_lines

    source = "x = f(\n    1,\n    2)\nif (x and\n        y):\n    z = 1\nelse:\n    z = 2\n"
    assert statement_lines(source, {1, 4}) == {1, 2, 3, 4, 5}
