"""Conditional flow matching for any DiT plugin: the loss and the ODE samplers.

Path x_t = (1 - t) * noise + t * mel, velocity target mel - noise (rectified flow, as
in Qwen2.5-Omni's token2wav). Sampling integrates from t = 0 (noise) to 1 (mel).
"""

from __future__ import annotations

import torch
from torch import Tensor

from omnitrain.slots import DiT


def flow_matching_loss(
    dit: DiT, mel: Tensor, codes: Tensor, code_mask: Tensor, cond_drop_prob: float = 0.0
) -> Tensor:
    """Masked MSE between predicted and true velocity. mel (S, T, M), codes (S, T/k)."""
    S = mel.shape[0]
    noise = torch.randn_like(mel)
    t = torch.rand(S, device=mel.device, dtype=mel.dtype)
    x_t = (1 - t)[:, None, None] * noise + t[:, None, None] * mel
    drop = torch.rand(S, device=mel.device) < cond_drop_prob
    velocity = dit(x_t, t, codes, code_mask, drop)
    frame_mask = code_mask.repeat_interleave(dit.mel_frames_per_code, dim=1)[..., None]
    err = (velocity - (mel - noise)).pow(2) * frame_mask
    denom = frame_mask.sum() * mel.shape[-1]
    return err.sum() / denom.clamp_min(1)


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
) -> Tensor:
    """Integrate the learned velocity field: codes (S, C) -> mel (S, C * k, n_mels).

    ``guidance`` > 0 applies classifier-free guidance: v = v_c + g * (v_c - v_uncond).
    """
    if method not in ("euler", "rk4"):
        raise ValueError(f"unknown ODE method '{method}': use 'euler' or 'rk4'")
    S, C = codes.shape
    x = torch.randn(
        S, C * dit.mel_frames_per_code, n_mels, generator=generator, device=codes.device
    )
    keep = torch.zeros(S, dtype=torch.bool, device=codes.device)

    def velocity(x: Tensor, t: float) -> Tensor:
        tt = torch.full((S,), t, device=x.device, dtype=x.dtype)
        v = dit(x, tt, codes, code_mask, keep)
        if guidance > 0:
            v_u = dit(x, tt, codes, code_mask, ~keep)
            v = v + guidance * (v - v_u)
        return v

    dt = 1.0 / steps
    for i in range(steps):
        t = i * dt
        if method == "euler":
            x = x + dt * velocity(x, t)
        else:
            k1 = velocity(x, t)
            k2 = velocity(x + 0.5 * dt * k1, t + 0.5 * dt)
            k3 = velocity(x + 0.5 * dt * k2, t + 0.5 * dt)
            k4 = velocity(x + dt * k3, t + dt)
            x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x
