"""The core calls only what the slot contracts declare (issue 21): every member it reads on a
plugin (``model.thinker.head_linear()``, ``model.dit.mel_frames_per_code``) is declared, with
a default where a plugin may leave it out, on the slot's base class in ``omnitrain/slots.py``,
and the core never probes a plugin for members no contract names (``hasattr``, ``getattr``
with a default, ``inspect.signature``): a plugin author reads the whole surface there.
Read off the source with ``ast``; ``cfg.<slot>.<field>`` is the plugin's config, not the plugin."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import omnitrain.slots as slots
from omnitrain.slots import SLOT_SPECS

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "omnitrain"
CONTRACTS = CORE / "slots.py"
SLOT_NAMES = {spec.name for spec in SLOT_SPECS}
# a chain whose root or holder is a config node reads plugin settings, not the plugin
CONFIG_NAME = re.compile(r"cfg|config|options|node|choice", re.IGNORECASE)
PLUGIN_EXPR = re.compile(r"(^|\.)(" + "|".join(sorted(SLOT_NAMES)) + r"|cls)$")


def declared(slot: str) -> set[str]:
    """Members the slot's contract declares: on its base or a base's subclass in slots.py
    (``TrainableVocoder``), attributes and annotated fields alike."""
    base = next(spec.base for spec in SLOT_SPECS if spec.name == slot)
    classes = [c for _, c in inspect.getmembers(slots, inspect.isclass) if issubclass(c, base)]
    names: set[str] = set()
    for cls in classes:
        for klass in cls.__mro__:
            names |= set(vars(klass)) | set(getattr(klass, "__annotations__", {}))
    return names


def root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def core_sources() -> list[tuple[str, ast.AST]]:
    return [(str(p.relative_to(ROOT)), ast.parse(p.read_text())) for p in sorted(CORE.rglob("*.py")) if p != CONTRACTS]


def undeclared_members(sources: list[tuple[str, ast.AST]]) -> list[str]:
    members = {slot: declared(slot) for slot in SLOT_NAMES}
    found = []
    for where, tree in sources:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                    and node.value.attr in SLOT_NAMES):
                continue
            holder = node.value.value
            if CONFIG_NAME.search(root(holder) or "") or (
                    isinstance(holder, ast.Attribute) and CONFIG_NAME.search(holder.attr)):
                continue
            if node.attr not in members[node.value.attr]:
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def probes(sources: list[tuple[str, ast.AST]]) -> list[str]:
    found = []
    for where, tree in sources:
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            name = ast.unparse(node.func)
            probing = (name == "hasattr" or (name == "getattr" and len(node.args) == 3)
                       or name in ("inspect.signature", "signature"))
            target = ast.unparse(node.args[0])
            target = target.split("(")[0] if name != "hasattr" and name != "getattr" else target
            subject = target.rsplit(".", 1)[0] if name in ("inspect.signature", "signature") else target
            if probing and PLUGIN_EXPR.search(subject) and not CONFIG_NAME.search(subject.split(".")[0]):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_core_reads_only_declared_plugin_members():
    assert undeclared_members(core_sources()) == [], "declare these in omnitrain/slots.py (with a default)"


def test_the_core_never_probes_a_plugin_for_undeclared_members():
    assert probes(core_sources()) == [], "declare the member in omnitrain/slots.py and call it"


def test_both_checks_fail_on_planted_calls():
    planted = ast.parse(
        "def f(model, cfg):\n"
        "    head = model.thinker.head_linear() if hasattr(model.thinker, 'head_linear') else None\n"
        "    runs = 'doc_runs' in inspect.signature(self.thinker.forward).parameters\n"
        "    k = getattr(model.dit, 'frames_per_code', 1)\n"
        "    w = getattr(registry('vocoder').get(name).cls, 'check_config', None)\n"
        "    x = model.talker.secret_rate\n"
        "    ok = cfg.thinker.hidden_size + model.thinker.hidden_size + model.dit.mel_frames_per_code\n")
    assert [line.split(": ", 1)[1] for line in undeclared_members([("planted", planted)])] == [
        "model.talker.secret_rate"]
    assert len(probes([("planted", planted)])) == 4
