"""HiFi-GAN's adversarial losses (least squares), feature matching, for any discriminator
that returns (scores, features) per sub-discriminator."""

from __future__ import annotations

from torch import Tensor


def discriminator_loss(real: list[Tensor], fake: list[Tensor]) -> Tensor:
    """Real scores toward 1, generated toward 0."""
    return sum(((1 - r).pow(2).mean() + f.pow(2).mean() for r, f in zip(real, fake)), real[0].new_zeros(()))


def generator_loss(fake: list[Tensor]) -> Tensor:
    """Generated scores toward 1."""
    return sum(((1 - f).pow(2).mean() for f in fake), fake[0].new_zeros(()))


def feature_matching_loss(real: list[list[Tensor]], fake: list[list[Tensor]]) -> Tensor:
    """L1 between the discriminators' feature maps of real and generated audio."""
    total = fake[0][0].new_zeros(())
    for rs, fs in zip(real, fake):
        for r, f in zip(rs, fs):
            total = total + (r.detach() - f).abs().mean()
    return total
