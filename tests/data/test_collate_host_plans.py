"""What collate finds on the host for the step (so the GPU is never read): the documents
(``doc_runs``) and the rows with a text target (``target_index``) agree with the model's."""

from __future__ import annotations

from omnitrain.data.collate import collate
from omnitrain.model.omni_model import next_token_targets
from omnitrain.nn.varlen import doc_runs
from omnitrain.run_config import compose_config
from omnitrain.tokens import IGNORE_INDEX
from tests.data.test_packing import PAD, examples
from tests.helpers import smoke_overrides


def test_collate_carries_the_documents_and_target_rows(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path))
    exs = examples(cfg, demo_dir)
    for batch in (collate(exs, PAD, pack_length=400), collate(exs, PAD)):
        want = (next_token_targets(batch) != IGNORE_INDEX).flatten().nonzero()[:, 0]
        assert batch.target_index.tolist() == want.tolist() and want.numel() > 0
        assert batch.doc_runs.cu_seqlens.tolist() == doc_runs(batch.doc_ids).cu_seqlens.tolist()
        assert batch.doc_runs.cu_seqlens[-1] == (batch.doc_ids != 0).sum()
    assert collate(exs, PAD, pack_length=400).doc_runs.cu_seqlens.numel() == len(exs) + 1
