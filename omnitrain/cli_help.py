"""The ``--help`` epilog of every verb: the recipes and config groups a verb that takes
overrides can use (read off recipes/, configs/ and the registry when help is asked for,
so the lists never go stale) and two examples."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterator

EXAMPLES: dict[str, tuple[str, ...]] = {
    "train": ("omnitrain train recipe=demo position=rope1d trainer.max_steps=200",
              "omnitrain train -m position=tmrope,rope1d recipe=smoke   # a sweep: one run per value",
              "omnitrain train recipe=path/to/my_recipe.yaml run_dir=runs/mine"),
    "config": ("omnitrain config recipe=omni7b_full strategy=fsdp",
               "omnitrain config recipe=path/to/my_recipe.yaml size=tiny"),
    "plan": ("omnitrain plan recipe=omni7b_full --gpus 8 --nodes 2",
             "omnitrain plan recipe=omni3b_long strategy=deepspeed_zero3 --gpu-memory 40"),
    "gpu-check": ("omnitrain gpu-check --out runs/gpu_check",
                  "omnitrain gpu-check --accelerator cpu --only ddp --parallel 2"),
    "list": ("omnitrain list", "omnitrain list --plugins path/to/my_plugin.py"),
    "data demo": ("omnitrain data demo data/demo",
                  "omnitrain data demo data/small codec=pitch --train 200 --val 16"),
    "data pack": ("omnitrain data pack manifest.jsonl data/mine --prefix train",
                  "omnitrain data pack val.jsonl data/mine --prefix val --shard-size 64MB --root /data/media"),
    "data resynth": ("omnitrain data resynth data/demo-speech/heldout/truth.jsonl runs/resynth --codec runs/demo-speech/codec",
                     "omnitrain data resynth real.jsonl runs/mimi_copy --codec hf_audio:models/mimi"),
    "data encode": ("omnitrain data encode data/demo data/demo_groups --codec pitch_groups recipe=qwen3_omni_smoke",
                    "omnitrain data encode 'data/mine/train-*.tar' data/mine_v2 --codec runs/codec/bundle"),
    "data convert": ("omnitrain data convert --from sharegpt chats.json chats.jsonl",
                     "omnitrain data convert --from llamafactory mllm.json mllm.jsonl --video-audio"),
    "summary": ("omnitrain summary runs/demo",
                "omnitrain summary runs/smoke --require-drop 0.9 --metrics train/loss"),
    "export": ("omnitrain export runs/demo/checkpoints/last.ckpt runs/demo/bundle",
               "omnitrain export runs/omni3b_full/checkpoints/last.ckpt hf_out --format hf"),
    "import-hf": ("omnitrain import-hf path/to/Qwen2.5-Omni-3B bundles/omni3b",
                  "omnitrain import-hf ~/hf/Qwen2.5-Omni-7B bundles/omni7b"),
    "generate": ("omnitrain generate runs/demo/bundle --text 'what is 12 plus 7?' --speech reply.wav",
                 "omnitrain generate runs/demo/bundle --manifest data/demo/heldout/manifest.jsonl --min-accuracy 0.5"),
    "eval": ("omnitrain eval runs/base/bundle runs/demo/bundle --manifest data/demo/heldout/manifest.jsonl --out r.json",
             "omnitrain eval --audio voices.jsonl --asr pocketsphinx --closed-vocabulary --speaker resemblyzer"),
}


def _verbs(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:  # argparse keeps sub-commands only here
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                yield path, sub
                yield from _verbs(sub, path)


def _takes_overrides(parser: argparse.ArgumentParser) -> bool:
    return any(a.dest == "overrides" for a in parser._actions)


def _wrap(head: str, items: list[str], width: int = 100) -> str:
    return textwrap.fill(", ".join(items), width=width, initial_indent=f"  {head:<16}",
                         subsequent_indent=" " * 18, break_on_hyphens=False)


def lists_text() -> str:
    """Recipes with their descriptions and config groups with their options."""
    from omnitrain.config.catalog import group_options, recipe_summaries
    from omnitrain.config.compose import RECIPE_PATH_ENV, config_dir, recipe_files

    recipes = recipe_summaries(recipe_files())
    width = max((len(n) for n, _ in recipes), default=0)
    lines = [f"recipes (recipe=<name>, or recipe=path/to/file.yaml; more folders: ${RECIPE_PATH_ENV}):"]
    lines += [f"  {name:<{width}}  {textwrap.shorten(text, 100, placeholder=' ...')}" for name, text in recipes]
    lines += ["", "config groups (group=option; any key: section.key=value, new keys: +section.key=value):"]
    try:
        lines += [_wrap(f"{group}:", options) for group, options in group_options(config_dir()).items()]
    except ImportError as exc:  # a broken installed plugin must not take the help down with it
        lines.append(f"  (cannot list the groups: {exc})")
    return "\n".join(lines)


def epilog(verb: str, overrides: bool) -> str:
    parts = [lists_text(), ""] if overrides else []
    examples = EXAMPLES.get(verb, ())
    if examples:
        parts += ["examples:", *(f"  {e}" for e in examples)]
    return "\n".join(parts)


def attach_help(parser: argparse.ArgumentParser) -> None:
    """Give every verb an epilog, computed only when its ``--help`` is printed (listing
    the groups loads the plugins: seconds that no other command should pay)."""
    for verb, sub in _verbs(parser):
        sub.formatter_class = argparse.RawDescriptionHelpFormatter
        if sub.description is None:
            sub.description = _help_of(parser, verb)
        plain = sub.format_help

        def format_help(sub=sub, verb=verb, plain=plain) -> str:
            if sub.epilog is None:
                sub.epilog = epilog(verb, _takes_overrides(sub))
            return plain()

        sub.format_help = format_help  # type: ignore[method-assign]


def _help_of(parser: argparse.ArgumentParser, verb: str) -> str | None:
    """The one-line ``help=`` a verb was added with, shown atop its own ``--help``."""
    *head, name = verb.split()
    node = parser
    for part in head:
        node = dict(_verbs(node))[part]
    for action in node._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.dest == name:
                    return choice.help
    return None
