#!/usr/bin/env bash
# A scratch copy of the working tree to plant a bug in, without touching the checkout that
# others are testing. Usage: eval "$(scripts/scratch_tree.sh /tmp/wt-NAME)"
#   -> cd's nowhere; exports PYTHONPATH so `python -m pytest` run from /tmp/wt-NAME imports
#      omnitrain, omnitrain_plugins, omnitrain_configs and omnitrain_recipes from the copy
#      (the editable install's finder comes after PYTHONPATH), subprocesses included.
# Uncommitted changes of the checkout are copied too (tracked and untracked, not ignored).
set -euo pipefail
dest=${1:?usage: scripts/scratch_tree.sh /tmp/wt-NAME}
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ -e "$dest" ]; then git -C "$repo" worktree remove --force "$dest" >/dev/null 2>&1 || rm -rf "$dest"; fi
git -C "$repo" worktree prune
git -C "$repo" worktree add -q --detach "$dest" HEAD
# bring the checkout's uncommitted edits along
(cd "$repo" && git diff HEAD --binary) | (cd "$dest" && git apply --allow-empty 2>/dev/null || true)
(cd "$repo" && git ls-files --others --exclude-standard -z) | (cd "$repo" && xargs -0 -r cp --parents -t "$dest")
mkdir -p "$dest/.paths"
for pair in omnitrain:omnitrain omnitrain_plugins:plugins omnitrain_configs:configs omnitrain_recipes:recipes; do
    ln -sfn "$dest/${pair#*:}" "$dest/.paths/${pair%%:*}"
done
echo "export PYTHONPATH=$dest/.paths"
