"""What ``omnitrain import-hf`` and ``omnitrain export --format hf`` print."""

from __future__ import annotations

import shlex
from pathlib import Path

from omnitrain.hf.exporter import export_hf
from omnitrain.hf.importer import import_hf


def import_hf_command(folder: Path, out: Path) -> int:
    summary = import_hf(folder, out)
    print(f"bundle: {summary['bundle']} ({summary['parameters']:,} parameters, {summary['tensors']} tensors read, "
          f"{summary['kept']} kept as they are for export --format hf)")
    for slot, n in summary["left_random"].items():
        print(f"  the folder has no {slot} weights: {n} tensors start at random")
    for note in summary["notes"]:
        print(f"  note: {note}")
    print(f"fine-tune it: omnitrain train $(cat {shlex.quote(str(out))}/hf/overrides.txt) "
          f"init_from={shlex.quote(str(out))} data.train_shards=...")
    return 0


def export_hf_command(src: Path, out: Path) -> int:
    summary = export_hf(src, out)
    print(f"transformers folder: {summary['folder']} ({summary['tensors']} tensors in {summary['shards']} "
          f"shards; {', '.join(summary['files']) or 'no other files'})")
    return 0
