"""Codes arrive one by one; mel frames leave as soon as they are final.

Three ways, chosen by the DiT and ``generate.stream_mode``:

* ``BlockwiseODE`` (exact): a DiT with a block-local receptive field (``flow_dit``) gives
  each Runge-Kutta stage's velocity at block b from that stage's input on blocks
  b-back..b+ahead only. So every stage is advanced block by block as far as the codes
  allow, each DiT call on a sliding window of blocks, and the result equals a full decode
  from the same noise. The price: a block is final once codes reach ``ahead`` blocks
  further per DiT evaluation of the solve (steps x stages).
* ``WindowedODE`` (Qwen2.5-Omni's streaming): each block's mel is solved on its own
  window (``back`` blocks before, ``ahead`` after) with the full decode's noise. A block
  is ready once codes reach ``ahead`` blocks past it, whatever the solver; not equal to a
  full decode near window edges.
* ``WholeODE``: the whole utterance once all codes are in (DiTs that see everything).
"""

from __future__ import annotations

import torch
from torch import Tensor

from omnitrain.model.flow_matching import (
    guided_velocity,
    integrate,
    stage_input,
    tableau,
    time_grid,
)
from omnitrain.slots import DiT, SpeechCondition


class _Decoder:
    def __init__(self, dit: DiT, cond: SpeechCondition | None, noise: Tensor, steps: int,
                 method: str, guidance: float, sway: float) -> None:
        self.dit, self.cond, self.noise = dit, cond, noise
        self.steps, self.method, self.guidance, self.sway = steps, method, guidance, sway
        self.k = dit.mel_frames_per_code
        self.codes: list[int] = []
        self.finished = False
        self.emitted = 0

    def push(self, codes: list[int]) -> Tensor:
        """Add codes; return the mel frames (n, n_mels) that became final."""
        self.codes += codes
        if len(self.codes) * self.k > self.noise.shape[1]:
            raise ValueError(f"more codes ({len(self.codes)}) than the noise was drawn for")
        return self._advance()

    def finish(self) -> Tensor:
        """No more codes: return the remaining frames."""
        self.finished = True
        return self._advance()

    def velocity(self, start: int, end: int):
        """Guided velocity on frames [start, end) of the utterance."""
        codes = torch.tensor([self.codes[start // self.k: end // self.k]], device=self.noise.device)
        return guided_velocity(self.dit, codes, torch.ones_like(codes, dtype=torch.bool), self.cond,
                               self.guidance, offset=start)

    def _advance(self) -> Tensor:
        raise NotImplementedError


class WholeODE(_Decoder):
    def _advance(self) -> Tensor:
        if not self.finished or not self.codes:
            return self.noise.new_zeros(0, self.noise.shape[-1])
        T = len(self.codes) * self.k
        mel = integrate(self.velocity(0, T), self.noise[:, :T], self.steps, self.method, self.sway)
        self.emitted = T
        return mel[0]


class WindowedODE(_Decoder):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.block, self.back, self.ahead = self.dit.receptive_field

    def _advance(self) -> Tensor:
        total = len(self.codes) * self.k
        out = []
        while self.emitted < total:
            b = self.emitted // self.block
            need = (b + 1 + self.ahead) * self.block
            if need > total and not self.finished:
                break
            lo, hi = max(0, b - self.back) * self.block, min(total, need)
            mel = integrate(self.velocity(lo, hi), self.noise[:, lo:hi], self.steps, self.method, self.sway)
            end = min(total, (b + 1) * self.block)
            out.append(mel[0, self.emitted - lo: end - lo])
            self.emitted = end
        return torch.cat(out) if out else self.noise.new_zeros(0, self.noise.shape[-1])


class BlockwiseODE(_Decoder):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.block, self.back, self.ahead = self.dit.receptive_field
        self.tab = tableau(self.method)
        self.times = time_grid(self.steps, self.sway)
        stages = len(self.tab.c)
        # y[n]: the state at time n of the grid; ks[n][i]: stage i's velocity in interval n;
        # each valid on frames [0, its frontier)
        self.y = [self.noise.clone()] + [torch.zeros_like(self.noise) for _ in range(self.steps)]
        self.y_end = [0] * (self.steps + 1)
        self.ks = [[torch.zeros_like(self.noise) for _ in range(stages)] for _ in range(self.steps)]
        self.k_end = [[0] * stages for _ in range(self.steps)]

    def _reach(self, valid: int, total: int) -> int:
        """Frames whose velocity is exact when the stage input is valid on [0, valid)."""
        if self.finished and valid == total:
            return total
        return max(0, valid // self.block - self.ahead) * self.block

    def _advance(self) -> Tensor:
        total = len(self.codes) * self.k
        self.y_end[0] = total if self.finished else total // self.block * self.block
        for n, (t0, t1) in enumerate(zip(self.times[:-1], self.times[1:])):
            h = t1 - t0
            for i, (c, row) in enumerate(zip(self.tab.c, self.tab.a)):
                valid = min([self.y_end[n]] + self.k_end[n][:i])
                end, start = self._reach(valid, total), self.k_end[n][i]
                if end <= start:
                    continue
                lo = max(0, start // self.block - self.back) * self.block
                hi = min(valid, end + self.ahead * self.block)
                ks = [k[:, lo:hi] for k in self.ks[n][:i]]
                x = stage_input(self.y[n][:, lo:hi], ks, row, h)
                v = self.velocity(lo, hi)(x, t0 + c * h)
                self.ks[n][i][:, start:end] = v[:, start - lo: end - lo]
                self.k_end[n][i] = end
            start, end = self.y_end[n + 1], min([self.y_end[n]] + self.k_end[n])
            if end > start:
                ks = [k[:, start:end] for k in self.ks[n]]
                self.y[n + 1][:, start:end] = stage_input(self.y[n][:, start:end], ks, self.tab.b, h)
                self.y_end[n + 1] = end
        start, end = self.emitted, self.y_end[-1]
        self.emitted = max(start, end)
        return self.y[-1][0, start:end]


def chunked_decoder(dit: DiT, mode: str, cond: SpeechCondition | None, noise: Tensor, steps: int,
                    method: str, guidance: float, sway: float) -> _Decoder:
    """The decoder for this DiT: block-wise if its receptive field allows, else whole."""
    if dit.receptive_field is None:
        cls = WholeODE
    else:
        cls = {"exact": BlockwiseODE, "window": WindowedODE}[mode]
    return cls(dit, cond, noise, steps, method, guidance, sway)
