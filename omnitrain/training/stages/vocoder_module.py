"""The vocoder stage (``task=vocoder``): a trainable vocoder against its discriminators.

Manual optimisation, two optimizers (HiFi-GAN / BigVGAN): a discriminator step on real
vs generated audio, then a generator step on adversarial + feature-matching + mel L1
losses. The whole OmniModel is held (frozen but for the vocoder) so checkpoints export
to a complete bundle; start from a previous stage with ``init_from``. Note that
Lightning counts both optimizers' steps in ``global_step`` (two per batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from omnitrain.config.typed import RunConfig
from omnitrain.features.speech_mel import SpeechMel
from omnitrain.model.omni_model import OmniModel
from omnitrain.training.stages.gan_losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from omnitrain.training.stages.stage_module import StageModule


class VocoderModule(StageModule):
    def __init__(self, cfg: RunConfig) -> None:
        super().__init__(cfg)
        self.automatic_optimization = False
        self.discriminator: torch.nn.Module | None = None

    def after_build(self, model: OmniModel) -> None:
        model.requires_grad_(False)
        model.vocoder.requires_grad_(True)
        self.discriminator = model.vocoder.build_discriminator()
        self.mel = SpeechMel(model.speech_cfg)

    def _mel_of(self, wave: Tensor, frames: int) -> Tensor:
        return self.mel(wave)[:, :frames]

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        mel, wave = batch
        t = self.cfg.vocoder_train
        opt_g, opt_d = self.optimizers()
        fake = self.model.vocoder(mel)
        # discriminator: real -> 1, generated -> 0
        real_scores, _ = self.discriminator(wave)
        fake_scores, _ = self.discriminator(fake.detach())
        d_loss = discriminator_loss(real_scores, fake_scores)
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        self.clip_gradients(opt_d, gradient_clip_val=t.grad_clip, gradient_clip_algorithm="norm")
        opt_d.step()
        # generator: fool the discriminators, match their features, match the mel
        fake_scores, fake_feats = self.discriminator(fake)
        with torch.no_grad():
            _, real_feats = self.discriminator(wave)
        adv, fm = generator_loss(fake_scores), feature_matching_loss(real_feats, fake_feats)
        mel_l1 = F.l1_loss(self._mel_of(fake, mel.shape[1]), mel)
        g_loss = adv + t.fm_weight * fm + t.mel_weight * mel_l1
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        self.clip_gradients(opt_g, gradient_clip_val=t.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()
        bs = int(mel.shape[0])
        for name, value in {"gen": g_loss, "disc": d_loss, "adv": adv, "fm": fm, "mel_l1": mel_l1}.items():
            self.log(f"train/{name}", value, prog_bar=name in ("gen", "disc", "mel_l1"), batch_size=bs)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        mel, _ = batch
        fake = self.model.vocoder(mel)
        self.log("val/mel_l1", F.l1_loss(self._mel_of(fake, mel.shape[1]), mel), prog_bar=True,
                 batch_size=int(mel.shape[0]), sync_dist=True)

    @torch.no_grad()
    def audio_sample(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        return self.model.vocoder(batch[0][:1])[0]

    def configure_optimizers(self):
        t = self.cfg.vocoder_train
        betas = tuple(t.betas)
        opt_g = torch.optim.AdamW(self.model.vocoder.parameters(), lr=t.lr, betas=betas)
        opt_d = torch.optim.AdamW(self.discriminator.parameters(), lr=t.lr, betas=betas)
        return [opt_g, opt_d]
