"""Conditional flow matching for any DiT plugin: the loss and the ODE samplers.

Path x_t = (1 - t) * noise + t * mel, velocity target mel - noise (rectified flow, as
in Qwen2.5-Omni's token2wav). Sampling integrates from t = 0 (noise) to 1 (mel) with an
explicit Runge-Kutta method given by its tableau: ``euler``, ``rk4`` (classic) or
``rk4_38`` (Kutta's 3/8 rule, which Qwen2.5-Omni uses), on a time grid optionally bent
by sway sampling (Qwen: ``sway=-1``, more steps near t = 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from omnitrain.slots import DiT, DiTOutput, SpeechCondition


@dataclass(frozen=True)
class Tableau:
    """Explicit Runge-Kutta method: stage i evaluates at t + c[i] h on
    y + h * sum_j a[i][j] k_j; the step is h * sum_i b[i] k_i."""

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]


TABLEAUS: dict[str, Tableau] = {
    "euler": Tableau((0.0,), ((),), (1.0,)),
    "rk4": Tableau((0.0, 0.5, 0.5, 1.0), ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
                   (1 / 6, 1 / 3, 1 / 3, 1 / 6)),
    "rk4_38": Tableau((0.0, 1 / 3, 2 / 3, 1.0), ((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
                      (1 / 8, 3 / 8, 3 / 8, 1 / 8)),
}


def tableau(method: str) -> Tableau:
    if method not in TABLEAUS:
        raise ValueError(f"unknown ODE method '{method}': use one of {sorted(TABLEAUS)}")
    return TABLEAUS[method]


def time_grid(steps: int, sway: float = 0.0) -> list[float]:
    """steps + 1 times from 0 to 1; sway s bends t -> t + s (cos(pi t / 2) - 1 + t)."""
    if steps < 1:
        raise ValueError(f"ODE steps must be >= 1, got {steps}")
    t = torch.linspace(0, 1, steps + 1, dtype=torch.float32)
    if sway:
        t = t + sway * (torch.cos(math.pi / 2 * t) - 1 + t)
    return t.tolist()


def stage_input(y: Tensor, ks: list[Tensor], row: tuple[float, ...], h: float) -> Tensor:
    """y + h * sum_j a_ij k_j (the input of one Runge-Kutta stage)."""
    out = y
    for a, k in zip(row, ks):
        if a:
            out = out + (h * a) * k
    return out


def flow_matching_loss(
    dit: DiT, mel: Tensor, codes: Tensor, code_mask: Tensor, cond_drop_prob: float = 0.0,
    cond: SpeechCondition | None = None, ref_drop_prob: float = 0.0, frames: Tensor | float | None = None,
    aux_losses: dict[str, Tensor] | None = None,
) -> Tensor:
    """Masked MSE between predicted and true velocity. mel (S, T, M), codes (S, T/k): each
    frame's error averaged over the mel bins, summed over the frames and divided by
    ``frames`` (default: this call's frames; a whole step's count weights by the step).

    ``cond_drop_prob``: drop codes, speaker and reference together (for guidance);
    ``ref_drop_prob``: drop only the reference, so the DiT also works without one.
    ``aux_losses``: where the DiT's own named losses go (``DiTOutput``), if it returns any.
    """
    S = mel.shape[0]
    noise = torch.randn_like(mel)
    t = torch.rand(S, device=mel.device, dtype=mel.dtype)
    x_t = (1 - t)[:, None, None] * noise + t[:, None, None] * mel
    drop = torch.rand(S, device=mel.device) < cond_drop_prob
    if cond is not None and ref_drop_prob > 0:
        no_ref = torch.rand(S, device=mel.device) < ref_drop_prob
        cond = SpeechCondition(cond.speaker, cond.reference,
                               cond.reference_lengths.masked_fill(no_ref, 0))
    out = DiTOutput.of(dit(x_t, t, codes, code_mask, drop, cond))
    velocity = out.velocity
    if aux_losses is not None:
        aux_losses.update(out.aux_losses)
    frame_mask = code_mask.repeat_interleave(dit.mel_frames_per_code, dim=1)[..., None]
    err = (velocity - (mel - noise)).pow(2) * frame_mask
    if frames is None:
        frames = frame_mask.sum().clamp_min(1)
    return err.sum() / (frames * mel.shape[-1])


def guided_velocity(
    dit: DiT, codes: Tensor, code_mask: Tensor, cond: SpeechCondition | None, guidance: float,
    offset: int = 0,
) -> Callable[[Tensor, float], Tensor]:
    """v(x, t) with classifier-free guidance: v_c + g (v_c - v_uncond) when g > 0."""
    S = codes.shape[0]
    keep = torch.zeros(S, dtype=torch.bool, device=codes.device)

    def velocity(x: Tensor, t: float) -> Tensor:
        tt = torch.full((S,), t, device=x.device, dtype=x.dtype)
        v = DiTOutput.of(dit(x, tt, codes, code_mask, keep, cond, offset)).velocity
        if guidance > 0:
            v_u = DiTOutput.of(dit(x, tt, codes, code_mask, ~keep, cond, offset)).velocity
            v = v + guidance * (v - v_u)
        return v

    return velocity


def integrate(f: Callable[[Tensor, float], Tensor], y: Tensor, steps: int, method: str = "euler",
              sway: float = 0.0) -> Tensor:
    """Solve dy/dt = f(y, t) from t = 0 to 1."""
    tab = tableau(method)
    times = time_grid(steps, sway)
    for t0, t1 in zip(times[:-1], times[1:]):
        h = t1 - t0
        ks: list[Tensor] = []
        for c, row in zip(tab.c, tab.a):
            ks.append(f(stage_input(y, ks, row, h), t0 + c * h))
        y = stage_input(y, ks, tab.b, h)
    return y


@torch.no_grad()
def sample_mel(
    dit: DiT,
    codes: Tensor,
    code_mask: Tensor,
    n_mels: int,
    steps: int = 16,
    method: str = "euler",
    guidance: float = 0.0,
    generator: torch.Generator | None = None,
    cond: SpeechCondition | None = None,
    sway: float = 0.0,
    noise: Tensor | None = None,
) -> Tensor:
    """Integrate the learned velocity field: codes (S, C) -> mel (S, C * k, n_mels).

    ``guidance`` > 0 applies classifier-free guidance: v = v_c + g * (v_c - v_uncond).
    ``noise`` (S, C * k, n_mels): the starting point (default: drawn from ``generator``).
    """
    S, C = codes.shape
    T = C * dit.mel_frames_per_code
    if noise is None:
        noise = torch.randn(S, T, n_mels, generator=generator, device=codes.device)
    f = guided_velocity(dit, codes, code_mask, cond, guidance)
    return integrate(f, noise[:, :T], steps, method, sway)
