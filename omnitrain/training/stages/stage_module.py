"""What every training stage's LightningModule shares: the run config, the strategy's
hooks around model construction, weight loading, full-parameter access and clipping,
the per-step reseeding that makes resume exact, and the skipped-sample counts.

A stage (``omnitrain.training.stages.tasks``) subclasses it and says what happens to the built
model (``after_build``: freeze, add a discriminator), and its steps and optimizers.
"""

from __future__ import annotations

from collections import Counter

import lightning as L
import numpy as np
import torch

from omnitrain.config.typed import RunConfig
from omnitrain.data.batch import Batch
from omnitrain.model.omni_model import OmniModel
from omnitrain.parallel import Strategy, strategy_for
from omnitrain.training.init_from import load_matching
from omnitrain.training.log_steps import will_log


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    """A 63-bit seed from the run seed and the position in training."""
    return int(np.random.SeedSequence([seed, step, micro, rank]).generate_state(2, np.uint64)[0] >> 1)


class StageModule(L.LightningModule):
    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.save_hyperparameters({"config": cfg.to_dict()})
        self.cfg = cfg
        self.model: OmniModel | None = None
        self._strategy: Strategy | None = None
        self.skipped: Counter[str] = Counter()
        self._micro = (-1, 0)  # (global step, micro-batch within it) of the last batch

    @property
    def strategy(self) -> Strategy:
        if self._strategy is None:
            self._strategy = strategy_for(self.cfg)
        return self._strategy

    def configure_model(self) -> None:
        """Runs inside the strategy's sharded context (under ZeRO-3, ``zero.Init``: each
        module's parameters are partitioned as it is built, so no rank ever holds the
        whole model), and inside the strategy's own construction context."""
        if self.model is not None:
            return
        with self.strategy.construction():
            self.model = OmniModel(self.cfg)
        if self.cfg.init_from:
            with self.strategy.loading(self.model):
                load_matching(self.model, self.cfg.init_from)
        self.after_build(self.model)

    def after_build(self, model: OmniModel) -> None:
        """What the stage does to the built (and loaded) model: freeze slots, add parts."""

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        """Reseed the RNG (flow-matching noise and times, condition dropout) from the step.

        The draws of step k then depend on (seed, k, micro-batch, rank) only, never on
        how many steps this process has run, so a resumed run continues the same loss
        curve (Lightning checkpoints do not carry RNG state), and ranks draw differently.
        """
        step = int(self.trainer.global_step)
        micro = self._micro[1] + 1 if self._micro[0] == step else 0
        self._micro = (step, micro)
        torch.manual_seed(step_seed(int(self.cfg.seed), step, micro, int(self.global_rank)))

    def _full_parameters(self):
        """Calling a submodule outside the root's forward (the strategy decides what that
        needs: FSDP gathers full parameters, every rank entering)."""
        return self.strategy.full_parameters(self.trainer if self._trainer is not None else None)

    def _log_skips(self, batch: Batch) -> None:
        """Samples dropped so far, every rank's together, logged on logging steps. Every rank
        joins the same gather on the same steps, whether or not it skipped anything: a
        collective only on the rank that met a bad sample (``sync_dist`` on a key only it
        logs) paired with the others' gradient all-reduce and hung the run."""
        self.skipped.update(batch.skipped)
        if not will_log(self._trainer):  # None: no Trainer (tests)
            return
        totals = summed_across_ranks(self.skipped)
        if totals:
            self.log("data/skipped", float(sum(totals.values())), prog_bar=True)
            for reason, n in sorted(totals.items()):
                self.log(f"data/skipped_{reason}", float(n))

    def on_before_optimizer_step(self, optimizer) -> None:
        """Strategies that clip gradients themselves do it here (FSDP: by the global norm)."""
        self.strategy.before_optimizer_step(self.trainer, self.cfg.trainer.gradient_clip_val)


def summed_across_ranks(counts: Counter[str]) -> Counter[str]:
    """Every rank's counts added up (one small object gather; every rank must call it)."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return Counter(counts)
    gathered: list[dict[str, int] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, dict(counts))
    return sum((Counter(g) for g in gathered if g), Counter())
