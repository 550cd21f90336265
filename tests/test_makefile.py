"""`make venv`: a venv made by another Python is rebuilt, not reused (a failed 3.12
install must not be what `make PYTHON=python3.11` then installs into); an unsupported
or missing Python is refused before anything is created. Real make, real venvs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HERE = "{}.{}".format(*sys.version_info[:2])

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def fake_python(path: Path, version: str) -> Path:
    """An interpreter that reports ``version``: what the Makefile asks a Python."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755)
    return path


def test_a_venv_of_another_python_is_rebuilt(tmp_path):
    venv = tmp_path / "venv"
    fake_python(venv / "bin" / "python", "3.9")  # "made by 3.9"
    (venv / "pyvenv.cfg").write_text("version = 3.9.0\n")
    (venv / "leftover").write_text("from the old install")
    out = make("venv", f"PYTHON={sys.executable}", f"VENV={venv}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"made by Python 3.9, {sys.executable} is {HERE}: rebuilding it" in out.stdout
    assert not (venv / "leftover").exists()
    version = subprocess.run([venv / "bin" / "python", "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout
    assert version.strip() == str(sys.version_info[:2])
    again = make("venv", f"PYTHON={sys.executable}", f"VENV={venv}")  # same Python: kept
    assert again.returncode == 0 and "rebuilding" not in again.stdout


def test_an_unsupported_or_missing_python_is_refused_before_anything_is_made(tmp_path):
    venv = tmp_path / "venv"
    old = fake_python(tmp_path / "python3.10", "3.10")
    out = make("demo", f"PYTHON={old}", f"VENV={venv}")
    assert out.returncode != 0
    assert "is Python 3.10; omnitrain needs one of 3.11 3.12 3.13: make PYTHON=python3.12 demo" in out.stdout
    missing = make("venv", f"PYTHON={tmp_path / 'nope'}", f"VENV={venv}")
    assert missing.returncode != 0 and "does not run" in missing.stdout
    assert not venv.exists()


def test_a_folder_that_is_not_a_venv_is_left_alone(tmp_path):
    mine = tmp_path / "venv"
    mine.mkdir()
    (mine / "notes.txt").write_text("my files")
    out = make("venv", f"PYTHON={sys.executable}", f"VENV={mine}")
    assert out.returncode != 0 and "exists but is not a venv" in out.stdout
    assert (mine / "notes.txt").read_text() == "my files"


def test_clean_keeps_the_venvs_and_says_so():
    out = make("-n", "clean")
    assert "rm -rf data/demo runs/demo data/smoke-py* runs/smoke-py*" in out.stdout
    assert ".venv" not in out.stdout.splitlines()[0]
    assert "kept: .venv" in out.stdout
    assert "rm -rf .venv .venv-py*" in make("-n", "distclean").stdout


def test_every_package_is_in_pyproject():
    """A wheel holds only the packages pyproject lists (an editable install hides a missing
    one: omnitrain.hf and omnitrain.evaluation were missing)."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(("omnitrain_plugins",) + p.parent.relative_to(root / "plugins").parts) if p.is_relative_to(root / "plugins")
             else ".".join(p.parent.relative_to(root).parts)
             for p in [*(root / "omnitrain").rglob("__init__.py"), *(root / "plugins").rglob("__init__.py")]}
    assert found - listed == set(), f"add to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"
