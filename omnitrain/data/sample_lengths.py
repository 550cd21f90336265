"""Thinker tokens per sample, which token batching plans an epoch's batches from.

A sample's length depends on the tokenizer and the audio/vision encoders' processors
(how many tokens a second of audio or a frame of video becomes), so lengths are keyed
by those config sections: ``data pack`` and ``data demo`` record them for the config
they ran with, and a run with another one measures them again (once, cached).
"""

from __future__ import annotations

import hashlib
import json

from omnitrain.config.typed import RunConfig
from omnitrain.data.examples import ExampleBuilder

LENGTH_SECTIONS = ("tokenizer", "audio_encoder", "vision_encoder")


def lengths_key(cfg: RunConfig) -> str:
    """Names the config sections that decide a sample's token count."""
    sections = cfg.to_dict()
    text = json.dumps({s: sections.get(s) for s in LENGTH_SECTIONS}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class LengthMeter:
    """``meter(url)``: the token count of every sample of a shard, in order (0 for one that
    cannot be built: it is skipped in training anyway). Builds each sample as training does,
    with no ``data.max_tokens`` limit, so the count does not depend on it."""

    def __init__(self, cfg: RunConfig) -> None:
        self.key = lengths_key(cfg)
        self.examples = ExampleBuilder(cfg)

    def of_sample(self, sample: dict) -> int:
        self.examples.builder.max_tokens = 1 << 62
        example = self.examples(sample, count_skips=False)
        return 0 if example is None else len(example)

    def __call__(self, url: str) -> list[int]:
        from omnitrain.data.tar_samples import read_shard

        return [self.of_sample(sample) for _, sample in read_shard(url)]
