"""The Thinker benchmarks run end to end at a tiny shape, and their output check fails
when the two models do not compute the same thing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import thinker_decode  # noqa: E402
import thinker_step  # noqa: E402

TINY = ["--preset", "tiny", "--seq", "64", "--steps", "1", "--warmup", "1", "--threads", "1", "--no-memory"]


def test_thinker_step_matches_transformers_and_reports_ratios():
    result = thinker_step.main([*TINY, "--variants", "auto,dense,packed"])
    assert result["checks"]["omnitrain:auto"]["ok"] and result["checks"]["omnitrain:dense"]["ok"]
    for variant in ("auto", "dense"):  # first losses 6.93: 2 fp32 ulps apart
        assert result["checks"][f"omnitrain:{variant}"]["abs_diff"] < 5e-6  # measured 9.5e-7
    assert result["checks"]["omnitrain:packed"]["ok"] is None  # packed rows: another loss
    assert set(result["results"]) == {"omnitrain:auto", "omnitrain:dense", "omnitrain:packed", "transformers"}
    assert result["results"]["transformers"]["speed_vs_transformers"] == 1.0


def test_the_output_check_catches_different_weights(monkeypatch):
    build = thinker_step.build_transformers

    def skewed(shape, source, device):
        model = build(shape, source, device)
        with torch.no_grad():
            model.model.layers[0].mlp.up_proj.weight.mul_(1.5)
        return model

    monkeypatch.setattr(thinker_step, "build_transformers", skewed)
    with pytest.raises(SystemExit, match="do not compute the same thing"):
        thinker_step.main(TINY)


def test_decoding_with_the_cache_gives_transformers_tokens():
    result = thinker_decode.main(["--preset", "tiny", "--contexts", "16,48", "--new", "3", "--threads", "1"])
    assert all(r["same_greedy_tokens"] == 1.0 for r in result["per_token"].values())
    assert result["per_token"][48]["omnitrain_ms"] > 0
