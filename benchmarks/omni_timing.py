"""The instruments of ``benchmarks/omni_step.py``: a step cut into regions on one timeline
(perf_counter on the CPU, CUDA events on a GPU), hooks that open a region per slot module,
and a probe of the host time Lightning's callbacks, ``self.log`` and loggers take."""

from __future__ import annotations

import contextlib
import functools
import time

import torch

REGIONS = ("data_wait", "audio_encoder", "vision_encoder", "thinker", "talker", "dit", "forward_other",
           "backward", "optimizer")
SLOT_MODULES = ("audio_encoder", "vision_encoder", "thinker", "talker", "dit")
# functions OmniModel calls by module-level name, and the slot whose time they are
LOSS_FUNCTIONS = {"target_rows_loss": "thinker", "flow_matching_loss": "dit"}  # the Talker's: its own ``loss``


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timeline:
    """Marks on one clock; each interval belongs to the region open at its start. Regions
    nest (``push``/``pop``): time is counted in the innermost one only."""

    def __init__(self, device: torch.device, enabled: bool = True) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.enabled = enabled
        self.marks: list[tuple[object, str | None]] = []
        self.stack: list[str] = []

    def _stamp(self):
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def mark(self, region: str | None) -> None:
        """From now on, time is ``region``'s (the base region of the step, under any pushes)."""
        if self.enabled:
            self.stack = [region] if region else []
            self.marks.append((self._stamp(), region))

    def begin(self, region: str) -> None:
        self.marks = []
        self.mark(region)

    def push(self, region: str) -> None:
        if self.enabled:
            self.stack.append(region)
            self.marks.append((self._stamp(), region))

    def pop(self) -> None:
        if self.enabled and self.stack:
            self.stack.pop()
            self.marks.append((self._stamp(), self.stack[-1] if self.stack else None))

    def end(self) -> dict[str, float] | None:
        """Close the step: seconds per region."""
        if not self.enabled:
            return None
        self.mark(None)
        sync(self.device)
        totals = dict.fromkeys(REGIONS, 0.0)
        for (t0, region), (t1, _) in zip(self.marks, self.marks[1:]):
            if region is not None:
                totals[region] += t0.elapsed_time(t1) / 1e3 if self.cuda else t1 - t0
        return totals


@contextlib.contextmanager
def slot_timers(model: torch.nn.Module, timeline: Timeline):
    """Hooks on each slot module's forward, the Thinker's embedding, and OmniModel's loss
    functions (by module-level name); all removed on exit. Yields what was instrumented."""
    import omnitrain.model.omni_model as omni_model

    handles, restore, found = [], [], []
    for slot in SLOT_MODULES:
        module = getattr(model, slot, None)
        if module is None:
            continue
        handles.append(module.register_forward_pre_hook(lambda m, a, s=slot: timeline.push(s)))
        handles.append(module.register_forward_hook(lambda m, a, o: timeline.pop()))
        found.append(f"{slot}.forward")

    def timed(fn, region):
        @functools.wraps(fn)
        def wrapper(*a, **k):
            timeline.push(region)
            try:
                return fn(*a, **k)
            finally:
                timeline.pop()
        return wrapper

    if hasattr(model.thinker, "embed"):
        model.thinker.embed = timed(model.thinker.embed, "thinker")  # an instance attribute shadows the method
        restore.append(lambda: delattr(model.thinker, "embed"))
        found.append("thinker.embed")
    model.talker.loss = timed(model.talker.loss, "talker")  # the Talker owns its loss (Talker.loss)
    restore.append(lambda: delattr(model.talker, "loss"))
    found.append("talker.loss")
    for name, region in LOSS_FUNCTIONS.items():
        fn = getattr(omni_model, name, None)
        if fn is None:
            continue  # renamed: its time stays in forward_other (the report lists what was timed)
        setattr(omni_model, name, timed(fn, region))
        restore.append(functools.partial(setattr, omni_model, name, fn))
        found.append(f"omni_model.{name} -> {region}")
    try:
        yield found
    finally:
        for h in handles:
            h.remove()
        for undo in restore:
            undo()


class Probe:
    """Host time in each callback hook, the module's hooks, ``LightningModule.log`` and the
    loggers' writes. Exclusive: a hook's own ``pl_module.log`` calls count under
    ``module.log``, not under the hook, so the rows add up."""

    HOOKS = ("on_train_batch_start", "on_train_batch_end", "on_before_backward", "on_after_backward",
             "on_before_optimizer_step", "on_before_zero_grad", "on_train_epoch_start", "on_train_epoch_end")
    # what the hand loop does too (not framework overhead): the model, clipping, the reseed
    SHARED = ("OmniModel.forward", "module configure_gradient_clipping", "module on_train_batch_start")

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.stack: list[list[float]] = []  # [start, time in nested probes]

    def reset(self) -> None:
        self.seconds, self.calls = {}, {}

    def _wrap(self, owner, attr: str, label: str) -> None:
        fn = getattr(owner, attr)

        @functools.wraps(fn)
        def wrapper(*a, **k):
            frame = [time.perf_counter(), 0.0]
            self.stack.append(frame)
            try:
                return fn(*a, **k)
            finally:
                self.stack.pop()
                spent = time.perf_counter() - frame[0]
                if self.stack:
                    self.stack[-1][1] += spent
                self.seconds[label] = self.seconds.get(label, 0.0) + spent - frame[1]
                self.calls[label] = self.calls.get(label, 0) + 1

        setattr(owner, attr, wrapper)

    def attach(self, trainer, pl_module) -> None:
        import lightning as L

        for cb in trainer.callbacks:
            if type(cb).__name__ == "StepClock":
                continue
            for hook in self.HOOKS:
                if getattr(type(cb), hook) is not getattr(L.Callback, hook):  # overridden: does something
                    self._wrap(cb, hook, f"callback {type(cb).__name__}.{hook}")
        for hook in ("on_train_batch_start", "on_before_optimizer_step", "configure_gradient_clipping"):
            self._wrap(pl_module, hook, f"module {hook}")
        self._wrap(pl_module, "log", "module.log (all self.log calls)")
        for logger in trainer.loggers:
            for attr in ("log_metrics", "save"):
                self._wrap(logger, attr, f"logger {type(logger).__name__}.{attr}")
        self._wrap(pl_module.model, "forward", "OmniModel.forward")
