"""Raw tar samples -> Examples: the one place a sample is built, and skipped and counted
when it cannot be."""

from __future__ import annotations

import json

from omnitrain.config.typed import RunConfig
from omnitrain.data.sample_builder import Example, SampleBuilder, SampleError
from omnitrain.data.skips import SKIPS
from omnitrain.plugin_loading import load_plugins


class _Members:
    """Looks up a sample's members by name, with an error that names what is missing."""

    def __init__(self, sample: dict, key: str) -> None:
        self.sample, self.key = sample, key

    def __call__(self, name: str) -> bytes:
        if name not in self.sample:
            present = sorted(k for k in self.sample if not k.startswith("__"))
            raise SampleError(f"sample {self.key}: member '{name}' is missing (has {present})")
        return self.sample[name]


def sample_key(sample: dict) -> str:
    """``<shard url>:<sample __key__>``, how batches, logs and skip messages name a sample."""
    return f"{sample.get('__url__', '?')}:{sample.get('__key__', '?')}"


def build_example(builder: SampleBuilder, sample: dict, count_skips: bool = True) -> Example | None:
    """The Example of a raw tar sample, or None (skipped; counted by error type)."""
    key = sample_key(sample)
    try:
        if "__error__" in sample:
            raise SampleError(f"sample {key}: {sample['__error__']}")
        if "json" not in sample:
            raise SampleError(f"sample {key} has no 'json' member (the conversation)")
        return builder.build(json.loads(sample["json"]), _Members(sample, key), key)
    except Exception as exc:  # a bad sample never stops training
        if count_skips:
            SKIPS.add(type(exc).__name__, key, exc)
        return None


class ExampleBuilder:
    """Raw samples -> Examples with the config's tokenizer and processors (built in the
    process that uses it, after its plugins load). A long run of nothing but bad samples
    is an error: the data or the config is wrong, not a few samples."""

    def __init__(self, cfg: RunConfig, max_failures: int = 1000) -> None:
        self.cfg, self.max_failures = cfg, max_failures
        self._builder: SampleBuilder | None = None
        self.failures = 0

    @property
    def builder(self) -> SampleBuilder:
        if self._builder is None:
            load_plugins(list(self.cfg.plugins))
            self._builder = SampleBuilder.from_config(self.cfg)
        return self._builder

    def __call__(self, sample: dict, count_skips: bool = True) -> Example | None:
        example = build_example(self.builder, sample, count_skips)
        if not count_skips:
            return example
        self.failures = 0 if example is not None else self.failures + 1
        if self.failures >= self.max_failures:
            raise SampleError(f"{self.failures} samples in a row could not be used (last: {sample_key(sample)}); "
                              "the data or the config is wrong, not a few samples")
        return example

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_builder": None}
