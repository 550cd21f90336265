"""The model's own replies to a few validation prompts, during training.

The first ``logger.samples`` conversations of the validation shards, cut before their
last assistant turn, are the prompts; the in-memory model answers each through the one
``omnitrain.inference.replier.Replier`` (as ``omnitrain generate`` and ``eval`` do), with
the run's ``generate`` settings. The expected reply is the cut turn's text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from omnitrain.config.typed import RunConfig
from omnitrain.data.examples import _Members
from omnitrain.data.sample_builder import Example, SampleBuilder
from omnitrain.data.shards import resolve_shards


@dataclass
class Prompt:
    key: str
    text: str  # the prompt's turns as text, media named: the table's first column
    expected: str  # the validation sample's own reply
    example: Example


def _describe(turns: list[dict]) -> str:
    lines = []
    for turn in turns:
        parts = []
        for part in turn.get("content", []):
            if "text" in part:
                parts.append(str(part["text"]))
            else:
                kind = next((k for k in ("audio", "image", "video") if k in part), "media")
                parts.append(f"[{kind}: {part.get(kind, '?')}]")
        lines.append(f"{turn.get('role', '?')}: {' '.join(parts)}")
    return "\n".join(lines)


def split_conversation(conversation: dict) -> tuple[dict, str]:
    """(the conversation up to its last assistant turn, that turn's text)."""
    turns = list(conversation.get("turns") or [])
    last = max((i for i, t in enumerate(turns) if t.get("role") == "assistant"), default=len(turns))
    expected = " ".join(str(p["text"]) for p in (turns[last].get("content", []) if last < len(turns) else [])
                        if "text" in p)
    return {**conversation, "turns": turns[:last]}, expected


def validation_prompts(cfg: RunConfig, n: int) -> list[Prompt]:
    """The first ``n`` usable prompts of ``data.val_shards`` (none without them)."""
    if n <= 0 or not cfg.data.val_shards:
        return []
    import webdataset as wds

    builder = SampleBuilder.from_config(cfg)
    out: list[Prompt] = []
    urls = resolve_shards(cfg.data.val_shards, "data.val_shards")
    for tried, sample in enumerate(wds.tarfile_to_samples()({"url": u} for u in urls)):
        if tried >= 20 * n:  # not conversations (another task's data): give up early
            break
        key = str(sample.get("__key__", "?"))
        try:
            prompt, expected = split_conversation(json.loads(sample["json"]))
            if not prompt["turns"]:
                continue
            example = builder.build(prompt, _Members(sample, key), key, for_generation=True)
        except Exception:  # noqa: BLE001 - a sample the data pipeline would skip is skipped here too
            continue
        out.append(Prompt(key, _describe(prompt["turns"]), expected, example))
        if len(out) >= n:
            break
    return out
