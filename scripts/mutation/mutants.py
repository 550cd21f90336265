"""Mutants of one Python source file: small, plausible bugs, each a text edit of one node.

The edits replace a node's exact source span, so the rest of the file (comments, layout,
line numbers) stays as it was and a mutant reads like a one-line diff. Operators are the
classic ones (Offutt's sufficient set, pruned of those that rarely compile to a new
behaviour): arithmetic, comparison and boolean operators swapped, constants nudged,
`not` dropped, return values replaced by None, calls and augmented assignments deleted.
Docstrings, strings, annotations and `raise` statements (their messages are what tests
match) are left alone: mutating them mostly yields equivalent mutants.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

_BINOP_SWAPS: dict[type, type] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult,
    ast.LShift: ast.RShift, ast.RShift: ast.LShift, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd,
    ast.MatMult: ast.Mult,
}
_CMP_SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.In: ast.NotIn, ast.NotIn: ast.In,
}


@dataclass(frozen=True)
class Mutant:
    """One edit: `line` is 1-based; `ident` is stable across runs (file:line:col:kind)."""

    path: str
    line: int
    col: int
    kind: str
    before: str
    after: str
    source: str

    @property
    def ident(self) -> str:
        return f"{self.path}:{self.line}:{self.col}:{self.kind}"


def _untouchable(node: ast.AST) -> bool:
    """Raise/assert statements and f-strings (the messages tests match), `if TYPE_CHECKING:`,
    `__all__`, and log lines (what they say, or whether they say it, is not behaviour)."""
    if isinstance(node, (ast.Raise, ast.Assert, ast.JoinedStr)):
        return True
    if isinstance(node, ast.If):
        return "TYPE_CHECKING" in ast.unparse(node.test)
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return ast.unparse(node.value.func).split(".")[-1] in {"warn", "warning", "info", "debug", "print"}
    return False


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """Nodes whose subtrees are not mutated: docstrings, annotations, raise statements,
    `if TYPE_CHECKING:` blocks and `__all__`."""
    skip: set[int] = set()

    def mark(node: ast.AST | None) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                mark(body[0])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
            for a in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
                mark(a.annotation)
            mark(node.args.vararg)
            mark(node.args.kwarg)
            for d in node.decorator_list:
                mark(d)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        elif _untouchable(node):
            mark(node)
    return skip


def _nudged(value: object) -> list[object]:
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1] if value != 1 else [0, 2]
    if isinstance(value, float):
        return [value * 2] if value else [1.0]
    return []


def _edits(node: ast.AST) -> list[tuple[str, ast.AST | str]]:
    """(kind, replacement node or text) for one node."""
    out: list[tuple[str, ast.AST | str]] = []
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
        new = ast.BinOp(node.left, _BINOP_SWAPS[type(node.op)](), node.right)
        out.append((f"binop:{type(node.op).__name__}", new))
    elif isinstance(node, ast.AugAssign):
        if type(node.op) in _BINOP_SWAPS:
            new = ast.AugAssign(node.target, _BINOP_SWAPS[type(node.op)](), node.value)
            out.append((f"augop:{type(node.op).__name__}", new))
        out.append(("delete", "pass"))
    elif isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in _CMP_SWAPS:
                ops = list(node.ops)
                ops[i] = _CMP_SWAPS[type(op)]()
                out.append((f"compare{i}:{type(op).__name__}", ast.Compare(node.left, ops, node.comparators)))
    elif isinstance(node, ast.BoolOp):
        swapped = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        out.append((f"boolop:{type(node.op).__name__}", ast.BoolOp(swapped, node.values)))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        out.append((f"unary:{type(node.op).__name__}", node.operand))
    elif isinstance(node, ast.Constant) and not isinstance(node.value, (str, bytes)):
        for value in _nudged(node.value):
            out.append((f"const:{node.value!r}->{value!r}", ast.Constant(value)))
    elif isinstance(node, ast.Return) and node.value is not None:
        if not (isinstance(node.value, ast.Constant) and node.value.value is None):
            out.append(("return:None", "return None"))
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        out.append(("delete", "pass"))
    return out


def _line_offsets(source: str) -> list[int]:
    offsets, total = [0], 0
    for line in source.splitlines(keepends=True):
        total += len(line)
        offsets.append(total)
    return offsets


def _char_offset(offsets: list[int], lines: list[str], line: int, col: int) -> int:
    """ast columns count UTF-8 bytes; convert to a str index."""
    text = lines[line - 1]
    return offsets[line - 1] + len(text.encode()[:col].decode(errors="ignore"))


def mutants(source: str, path: str) -> list[Mutant]:
    """Every mutant of `source` that still parses and differs from it, in file order."""
    tree = ast.parse(source)
    skip = _skipped_nodes(tree)
    lines = source.splitlines(keepends=True)
    offsets = _line_offsets(source)
    found: list[Mutant] = []
    for node in ast.walk(tree):
        if id(node) in skip or not hasattr(node, "end_col_offset"):
            continue
        for kind, replacement in _edits(node):
            start = _char_offset(offsets, lines, node.lineno, node.col_offset)
            end = _char_offset(offsets, lines, node.end_lineno, node.end_col_offset)
            before = source[start:end]
            text = replacement if isinstance(replacement, str) else ast.unparse(replacement)
            if isinstance(node, ast.expr) and not isinstance(node, ast.Constant):
                text = f"({text})"
            mutated = source[:start] + text + source[end:]
            if mutated == source:
                continue
            try:
                ast.parse(mutated)
            except SyntaxError:
                continue
            found.append(Mutant(path, node.lineno, node.col_offset, kind, before, text, mutated))
    found.sort(key=lambda m: (m.line, m.col, m.kind))
    return found
