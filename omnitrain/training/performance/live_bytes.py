"""Peak bytes of the tensors a block of code creates, counted at torch's dispatcher.

torch's own ``MemTracker`` refuses a module called twice in one step (our position
scheme serves both the Thinker and the Talker), so this counts storages directly: every
op's outputs are added when they appear and subtracted when their storage is freed.
"""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveBytes(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._keys: set[int] = set()

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = storage._cdata
        if key in self._keys:
            return
        self._keys.add(key)
        n = storage.nbytes()
        self.live += n
        self.peak = max(self.peak, self.live)

        def freed() -> None:
            self.live -= n
            self._keys.discard(key)

        weakref.finalize(storage, freed)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


def measured_step_peak(model: torch.nn.Module, batch, precision: str = "32-true") -> float:
    """Bytes at the peak of one training step of ``model`` on ``batch`` (CPU): weights,
    AdamW states and what forward and backward hold at their peak (gradients included)."""
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters())
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if str(precision) == "bf16-mixed"
                else contextlib.nullcontext())

    def step(track: LiveBytes | None = None) -> None:
        with track or contextlib.nullcontext():
            with autocast:
                loss = model(batch)["loss"]
            loss.backward()

    step()
    opt.step()  # creates the Adam states
    opt.zero_grad(set_to_none=True)
    track = LiveBytes()
    step(track)
    fixed = sum(t.numel() * t.element_size() for p in model.parameters()
                for t in (p, *opt.state[p].values()) if torch.is_tensor(t) and t.dim())
    return fixed + track.peak
