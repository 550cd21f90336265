"""A real 2-process DDP run (gloo on CPU) launched with torchrun, as a user would, with a
corrupt sample on one rank. (DDP training and validation on 2 ranks, launched by the script
users run: tests/test_launch_scripts.py.)"""

from __future__ import annotations

import csv
import os
import subprocess
import sys


def test_a_bad_sample_on_one_rank_is_counted_without_hanging_the_run(demo_dir, tmp_path):
    """A corrupt audio file in one shard: only the rank reading that shard skips samples.
    Its skip counts used to be logged with ``sync_dist`` (a collective the other rank never
    joined), which hung the run; now every rank gathers the counts on logging steps."""
    import io
    import shutil
    import tarfile

    data = tmp_path / "data"
    data.mkdir()
    for shard in sorted(demo_dir.glob("*.tar")):
        shutil.copy(shard, data / shard.name)
    first = data / "train-000000.tar"
    with tarfile.open(first) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers() if m.isfile()]
    bad = 0
    with tarfile.open(first, "w") as out:
        for m, payload in members:
            if m.name.split(".", 1)[1].startswith("audio_0."):
                payload, bad = b"not audio" * 8, bad + 1
                m.size = len(payload)
            out.addfile(m, io.BytesIO(payload))
    assert bad, "the shard must hold an audio sample to break"
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29519",
           "-m", "omnitrain", "train", "recipe=smoke", f"data.train_shards={data}/train-*.tar",
           f"data.val_shards={data}/val-*.tar", f"run_dir={run}", "logger=csv", "trainer.devices=2",
           "strategy=ddp", "trainer.log_every_n_steps=2"]
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(run / "csv" / "metrics.csv") as f:
        logged = [r for r in csv.DictReader(f) if r.get("data/skipped")]
    assert logged, "the skipped samples were not logged"
    last = logged[-1]
    assert float(last["data/skipped"]) == float(last["data/skipped_MediaError"]) >= 1
