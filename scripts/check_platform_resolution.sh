#!/usr/bin/env bash
# Does `pip install omnitrain` resolve on other platforms (macOS arm64, Linux aarch64, ...)?
# For each target: pyproject's pinned dependencies (and the dev extra), markers evaluated
# for that target, then
#   pip install --dry-run --ignore-installed --only-binary=:all: --platform P \
#       --python-version V --target DIR <requirements>
# i.e. a wheel must exist for every package, pins and everything they pull in.
#
# Three things pip does not do by itself, done here:
# - Two packages are sdists on every platform, both pure Python: deepspeed (its ops are
#   JIT-compiled on first use) and antlr4-python3-runtime 4.9 (hydra-core's). pip builds
#   them into py3-none-any wheels on any machine; --platform allows wheels only, so they
#   are built here first (pip wheel --no-deps) and offered with --find-links.
# - pip evaluates environment markers (torch's `nvidia-*; platform_system == "Linux"`,
#   our decord marker) for the machine it runs on, not for --platform: pip runs with its
#   marker environment set to the target's.
#
# - pip takes --platform literally (manylinux_2_28_aarch64 does not admit a
#   manylinux2014 wheel): every older tag the target also runs is passed too.
#
#   scripts/check_platform_resolution.sh                       # macOS arm64 + Linux aarch64, Python 3.12
#   PY_VERSIONS="3.11 3.12 3.13" PLATFORMS="macosx_14_0_arm64" scripts/check_platform_resolution.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
PY_VERSIONS="${PY_VERSIONS:-3.12}"
# macOS 14 and glibc 2.28: the oldest the pinned wheels support (av 18.1's arm64 wheel is
# macosx_14_0, torch 2.11's aarch64 wheel manylinux_2_28)
PLATFORMS="${PLATFORMS:-macosx_14_0_arm64 manylinux_2_28_aarch64}"
SDIST_ONLY="${SDIST_ONLY:-deepspeed==0.19.8 antlr4-python3-runtime==4.9.3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
failed=0
# shellcheck disable=SC2086
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$WORK/wheels" $SDIST_ONLY 2>&1 \
    | grep -v "is ignored: it is neither" || true
echo "built from sdists: $(cd "$WORK/wheels" && ls)"
if ls "$WORK/wheels" | grep -qv -- '-py3-none-any.whl$'; then
    echo "an sdist built a platform-specific wheel: it cannot stand in for other platforms"; exit 1
fi
for platform in $PLATFORMS; do
    for version in $PY_VERSIONS; do
        "$PY" - "$platform" "$version" "$WORK" <<'PY'
import subprocess
import sys
import re
import tomllib

from packaging.requirements import Requirement
from packaging.tags import mac_platforms

platform, version, work = sys.argv[1:4]
# the marker environment of the target (what `python -c 'import packaging.markers as m;
# print(m.default_environment())'` prints there)
if platform.startswith("macosx"):
    env = {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix",
           "platform_machine": "arm64" if platform.endswith("arm64") else "x86_64"}
elif platform.startswith("win"):
    env = {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt",
           "platform_machine": "AMD64" if platform.endswith("amd64") else "ARM64"}
else:
    env = {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
           "platform_machine": platform.split("_", 1)[1].removeprefix("2014_").removeprefix("2_28_")}
env |= {"python_version": version, "python_full_version": f"{version}.0",
        "implementation_name": "cpython", "platform_python_implementation": "CPython"}

# every platform tag the target runs: older macOS versions, older glibc versions
mac = re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", platform)
linux = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
if mac:
    tags = list(mac_platforms((int(mac[1]), int(mac[2])), mac[3]))
elif linux:
    arch = linux[2]
    tags = [f"manylinux_2_{y}_{arch}" for y in range(int(linux[1]), 4, -1)]
    tags += [f"manylinux{alias}_{arch}" for alias, y in (("2014", 17), ("2010", 12), ("1", 5))
             if y <= int(linux[1])]
else:
    tags = [platform]

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted, skipped = [], []
for line in project["dependencies"] + project["optional-dependencies"]["dev"]:
    req = Requirement(line)
    if req.marker and not req.marker.evaluate(env | {"extra": ""}):
        skipped.append(f"{req.name} (marker false here)")
        continue
    wanted.append(f"{req.name}{req.specifier}")

patch = f"""
import sys
import pip._vendor.packaging.markers as m
_default = m.default_environment
m.default_environment = lambda: {{**_default(), **{env!r}}}
from pip._internal.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
cmd = ["install", "--dry-run", "--ignore-installed", "--only-binary=:all:", "--platform", platform,
       *[x for tag in tags[1:] for x in ("--platform", tag)], "--python-version", version, "--target", f"{work}/{platform}-{version}",
       "--disable-pip-version-check", "--find-links", f"{work}/wheels", *wanted]
print(f"== {platform}, Python {version}: pip {' '.join(cmd[:4])} --platform {platform} "
      f"(+{len(tags) - 1} older tags) --python-version {version} --target DIR "
      f"<{len(wanted)} requirements>")
print("   left out: " + ("; ".join(skipped) or "none"))
run = subprocess.run([sys.executable, "-c", patch, *cmd], capture_output=True, text=True)
lines = [x for x in (run.stdout + run.stderr).splitlines() if "is ignored: it is neither" not in x]
result = [x for x in lines if x.startswith(("Would install", "ERROR"))]
print("\n".join("   " + x for x in (result or lines[-5:])))
print("   RESOLVES" if run.returncode == 0 else f"   FAILS (pip exit {run.returncode})")
sys.exit(run.returncode)
PY
        [ $? -eq 0 ] || failed=1
    done
done
exit $failed
