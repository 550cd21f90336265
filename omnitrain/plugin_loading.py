"""Finding plugins: installed entry points, importable modules and plain files.

Built-in plugins are found exactly like a third party's: through the entry-point
group ``omnitrain.plugins``. A plugin that is not installed can be named in the
config (``plugins=[my_pkg.my_module]`` or ``plugins=[path/to/my_plugin.py]``).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

ENTRY_POINT_GROUP = "omnitrain.plugins"

_loaded: set[str] = set()


class PluginLoadError(ImportError):
    pass


def load_entry_points() -> list[str]:
    """Import every module registered under the ``omnitrain.plugins`` group (once)."""
    names = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"ep:{ep.value}"
        if key in _loaded:
            continue
        try:
            ep.load()
        except Exception as exc:
            raise PluginLoadError(
                f"plugin entry point '{ep.name} = {ep.value}' (group {ENTRY_POINT_GROUP}) "
                f"failed to import: {exc}. Fix or uninstall the package that provides it."
            ) from exc
        _loaded.add(key)
        names.append(ep.value)
    return names


def load_plugin(spec: str) -> None:
    """Import a plugin given as a dotted module name or a path to a ``.py`` file."""
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).expanduser().resolve()
        key = f"file:{path}"
        if key in _loaded:
            return
        if not path.is_file():
            raise PluginLoadError(
                f"plugin file '{spec}' (from plugins=[...]) does not exist (looked at {path})."
            )
        # named by content: the same file copied elsewhere (into a bundle) is the same plugin
        digest = hashlib.sha1(path.read_bytes()).hexdigest()[:12]
        mod_name = f"omnitrain_user_plugin_{path.stem}_{digest}"
        if mod_name in sys.modules:
            _loaded.add(key)
            return
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception:
            del sys.modules[mod_name]
            raise
    else:
        key = f"mod:{spec}"
        if key in _loaded:
            return
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as exc:
            raise PluginLoadError(
                f"plugin module '{spec}' (from plugins=[...]) cannot be imported: {exc}. "
                "Install the package that provides it, or give a path to a .py file."
            ) from exc
    _loaded.add(key)


def load_plugins(specs: list[str] | tuple[str, ...] = ()) -> None:
    """Load installed plugins, then the ones named in the config."""
    load_entry_points()
    for spec in specs:
        load_plugin(str(spec))
