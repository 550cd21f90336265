"""How the ``eval`` section ties to the rest of the config, checked before anything is
built: known metrics, the scorers they need (registered ones), prompts to answer."""

from __future__ import annotations

from pathlib import Path

from omnitrain.config.typed import RunConfig
from omnitrain.evaluation.reply_metrics import REPLY_METRICS


def check_eval(cfg: RunConfig) -> list[str]:
    ev = cfg.eval
    if not ev.metrics:
        return []
    problems = [f"eval.metrics: {m!r} is not a metric of replies; use some of {list(REPLY_METRICS)}"
                for m in ev.metrics if m not in REPLY_METRICS]
    needs = {REPLY_METRICS[m] for m in ev.metrics if m in REPLY_METRICS} - {None}
    if "asr" in needs:
        problems += _scorer_problems("asr", ev.asr, [m for m in ev.metrics if REPLY_METRICS.get(m) == "asr"])
    if "speaker" in needs:
        problems += _scorer_problems("speaker", ev.speaker, ["sim"])
        if ev.reference is None:
            problems.append("eval.metrics has sim: set eval.reference to a wav of the voice the replies should have")
        elif not Path(ev.reference).is_file():
            problems.append(f"eval.reference: '{ev.reference}' is not a file (a wav of the voice to compare with)")
    if cfg.logger.samples <= 0:
        problems.append("eval.metrics are computed over the replies to logger.samples validation prompts: "
                        "set logger.samples to 1 or more")
    if not cfg.data.val_shards:
        problems.append("eval.metrics need validation prompts: set data.val_shards")
    return problems


def _scorer_problems(kind: str, spec: str | None, metrics: list[str]) -> list[str]:
    from omnitrain.evaluation.scorer_lookup import load_builtin_scorers, parse_spec
    from omnitrain.evaluation.scorers import ASR, SPEAKER

    if spec is None:
        example = "pocketsphinx or whisper:PATH" if kind == "asr" else "resemblyzer or wavlm:PATH"
        return [f"eval.metrics has {', '.join(metrics)}: set eval.{kind} (e.g. {example}; `omnitrain list` shows all)"]
    load_builtin_scorers()
    registry = ASR if kind == "asr" else SPEAKER
    name, _ = parse_spec(spec)
    return [] if name in registry else [f"eval.{kind}: {registry.unknown(name)}"]
