"""The floor plan holds: every core module imports only its own layer or those below, no
module imports another in a circle, strategy names stay inside their strategies, and
the core never imports a built-in plugin. Read off the source with ``ast`` (imports
inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "omnitrain"

# lowest first; a module's layer is that of its longest matching prefix
LAYERS: list[tuple[str, ...]] = [
    ("omnitrain.tokens", "omnitrain.checksums", "omnitrain.ranges", "omnitrain.name_registry", "omnitrain.nn",
     "omnitrain.positions.layout",
     "omnitrain.positions.pieces", "omnitrain.inference.sampling"),
    ("omnitrain.slots", "omnitrain.registry", "omnitrain.plugin_loading"),
    # scoring replies (ASR, speaker, text edits) needs no model: validation and eval share it
    ("omnitrain.features", "omnitrain.positions", "omnitrain.evaluation"),
    ("omnitrain.config",),
    ("omnitrain.data",),
    ("omnitrain.checkpoints",),
    # decoding needs only the model; training's validation replies through the one replier
    ("omnitrain.model", "omnitrain.parallel", "omnitrain.inference.thinker_decode", "omnitrain.inference.batched_decode",
     "omnitrain.inference.prompts", "omnitrain.inference.replier"),
    ("omnitrain.run_config", "omnitrain.training"),
    ("omnitrain.bundle",),
    ("omnitrain.hf",),  # import-hf / export --format hf: streams bundles <-> transformers folders
    ("omnitrain.inference",),
    ("omnitrain.api", "omnitrain.run_summary", "omnitrain.gpu_check", "omnitrain.sweep", "omnitrain.evaluation.run",
     "omnitrain.evaluation.command"),
    ("omnitrain.cli", "omnitrain.cli_help"),
    ("omnitrain.__main__", "omnitrain"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in CORE.rglob("*.py")}


def layer(module: str) -> int:
    best, rank = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank is not None, f"{module} has no layer: add it to LAYERS"
    return rank


def imports(module: str) -> set[str]:
    """Core modules ``module`` imports (``from a.b import c`` counts a.b.c if it is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {m: imports(m) for m in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_floor_plan(module):
    up = sorted(i for i in GRAPH[module] if layer(i) > layer(module) and not module.startswith(i + "."))
    assert not up, f"{module} (layer {layer(module)}) imports higher layers: {up}"


def test_no_import_circles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    # a package's __init__ importing its own submodules is not a circle of meaning
    circles = [c for c in circles if not all(m.startswith(min(c, key=len) + ".") or m == min(c, key=len) for m in c)]
    assert not circles, f"import circles: {circles}"


def test_the_core_never_imports_a_builtin_plugin():
    for module, path in MODULES.items():
        assert "omnitrain_plugins" not in path.read_text(), f"{module} names omnitrain_plugins"


@pytest.mark.parametrize("literal", ['"deepspeed"', '"fsdp"'])
def test_strategy_names_stay_in_their_strategy_modules(literal):
    home = {'"deepspeed"': "omnitrain/parallel/deepspeed/", '"fsdp"': "omnitrain/parallel/fsdp/"}[literal]
    outside = [str(p.relative_to(ROOT)) for p in CORE.rglob("*.py")
               if literal in p.read_text() and not str(p.relative_to(ROOT)).startswith(home)]
    assert not outside, f"{literal} appears outside {home}: {outside}"


def test_inference_and_eval_import_no_lightning():
    """Generation and evaluation load a bundle and reply without Lightning (a serving
    process does not need the training stack): the config's task check lives in
    ``omnitrain.config.task_checks``, the replier beside the decoder."""
    import subprocess
    import sys

    code = ("import sys, omnitrain.inference.generate, omnitrain.evaluation.command, omnitrain.evaluation.run, "
            "omnitrain.bundle; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('lightning', 'pytorch_lightning', 'lightning_fabric')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_task_has_its_check_name():
    from omnitrain.config.task_checks import TASK_NAMES
    from omnitrain.training.stages.tasks import TASKS

    assert list(TASKS) == list(TASK_NAMES)
