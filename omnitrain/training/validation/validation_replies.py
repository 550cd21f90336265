"""The model's own replies at each validation, on every rank: answered, scored, reduced.

The first ``logger.samples`` validation prompts (``tracking_samples.validation_prompts``)
are split over the ranks (prompt i to rank i mod world size). Each rank answers its share
through the one ``Replier`` (``eval.batch`` prompts decoding together) inside the
strategy's ``full_parameters`` block: under ZeRO-3 and FSDP every rank holds the whole
weights there and runs alone, so ranks with different prompts never wait on each other.
Each reply is scored as ``omnitrain eval`` scores it (``eval.metrics``: exact match, the
ASR's wer/cer, the speaker similarity), the metrics are reduced over the ranks
(``RankMeans``: every rank gets the means over all replies), and rank 0 gathers every
rank's replies to write and log as media.
"""

from __future__ import annotations

import logging
import time

import torch

from omnitrain.data.sample_builder import SampleBuilder
from omnitrain.evaluation.reply_metrics import metric_parts
from omnitrain.evaluation.speech_scores import SpeechScorer
from omnitrain.inference.replier import Replier, Reply
from omnitrain.training.validation.tracking_media import SampleRow
from omnitrain.training.validation.tracking_samples import Prompt, validation_prompts
from omnitrain.training.validation.val_metrics import RankMeans

log = logging.getLogger("omnitrain")


class ValidationReplies:
    def __init__(self, count: int) -> None:
        self.count = count
        self._prompts: list[Prompt] | None = None
        self._scorer: SpeechScorer | None = None
        self._replier: Replier | None = None

    def prompts(self, cfg) -> list[Prompt]:
        if self._prompts is None:
            try:
                self._prompts = validation_prompts(cfg, self.count)
            except Exception as exc:  # noqa: BLE001 - a sample must never stop training
                log.warning("validation replies: no prompts from data.val_shards (%s: %s)", type(exc).__name__, exc)
                self._prompts = []
        return self._prompts

    def scorer(self, cfg) -> SpeechScorer:
        """The recogniser and speaker encoder ``eval.metrics`` need (built once)."""
        if self._scorer is None:
            from omnitrain.evaluation.scorer_lookup import build_asr, build_speaker

            wanted = set(cfg.eval.metrics)
            asr = build_asr(cfg.eval.asr) if cfg.eval.asr and wanted & {"wer", "cer", "wer_expected"} else None
            speaker = build_speaker(cfg.eval.speaker) if cfg.eval.speaker and "sim" in wanted else None
            self._scorer = SpeechScorer(asr, speaker)
        return self._scorer

    def run(self, trainer, pl_module) -> tuple[list[SampleRow], dict[str, torch.Tensor]]:
        """Every rank calls it (collectives): (all ranks' reply rows on rank 0, in prompt
        order; [] elsewhere) and the metrics ``eval.metrics`` names, reduced."""
        cfg = pl_module.cfg
        rank, world = trainer.global_rank, trainer.world_size
        mine = self.prompts(cfg)[rank::world]
        t0 = time.perf_counter()
        replies = self._answer(trainer, pl_module, mine)
        means, rows = RankMeans(), []
        scorer = self.scorer(cfg) if cfg.eval.metrics else None
        for prompt, reply in zip(mine, replies, strict=False):  # none where generating failed
            rows.append(SampleRow(prompt.key, prompt.text, prompt.expected, reply.text, reply.wave, reply.mel,
                                  reply.speech_error))
            if scorer is None:
                continue
            scored = {"correct": reply.text.strip() == prompt.expected.strip(),
                      **scorer.score(reply.wave, reply.sample_rate, reply.text, prompt.expected, cfg.eval.reference)}
            for name, (part, count) in metric_parts(scored).items():
                if name in cfg.eval.metrics:
                    means.add_total(name, torch.tensor(part, device=pl_module.device), count)
        metrics = means.reduce(pl_module.device)  # every rank: the means over every rank's replies
        rows = _gathered(rows, world, trainer.global_rank)
        if rows:
            log.info("validation replies: %d replies in %.1fs on rank 0", len(mine), time.perf_counter() - t0)
        return rows, metrics

    def _answer(self, trainer, pl_module, prompts: list[Prompt]) -> list[Reply]:
        """This rank's replies (none if generation failed: a sample never stops training).
        Every rank enters the strategy's block, with or without prompts."""
        cfg = pl_module.cfg
        if self._replier is None or self._replier.model is not pl_module.model:  # built once a run
            self._replier = Replier(pl_module.model, cfg.generate, SampleBuilder.from_config(cfg),
                                    batch_size=cfg.eval.batch, keep_speech_errors=True)
        replier = self._replier
        device = pl_module.device
        try:
            with pl_module.strategy.full_parameters(trainer), \
                    torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                    trainer.precision_plugin.forward_context():
                torch.manual_seed(int(cfg.generate.seed))  # the same sampling draws each time
                if not prompts:
                    return []
                return replier.replies([p.example for p in prompts], [replier.condition()] * len(prompts))
        except Exception as exc:  # noqa: BLE001 - a sample must never stop training
            log.warning("validation replies: generating failed on rank %d (%s: %s); skipped",
                        trainer.global_rank, type(exc).__name__, exc)
            return []


def _gathered(rows: list[SampleRow], world: int, rank: int) -> list[SampleRow]:
    """Every rank's rows on rank 0, in prompt order (rank r holds prompts r, r + world, ...)."""
    dist = torch.distributed
    if world <= 1 or not (dist.is_available() and dist.is_initialized()):
        return rows
    shares: list[list[SampleRow] | None] = [None] * world
    dist.all_gather_object(shares, rows)
    if rank != 0:
        return []
    ordered = []
    for i in range(max(len(s or []) for s in shares)):
        ordered += [s[i] for s in shares if s and i < len(s)]
    return ordered
