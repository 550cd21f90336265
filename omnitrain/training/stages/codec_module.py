"""The codec stage (``task=codec``): a trainable speech codec (``codec=fsq``) learns to
reconstruct the shards' spoken replies through its discrete codes.

Data are the vocoder stage's: random segments of the replies (``vocoder_train.segment_frames``
mel frames of the run's ``speech`` hop). The codec's network turns each into its own frames
(``frames``); the loss is L1 + MSE between the decoded and the real frames, over whole codes.
Only the codec's network is built and checkpointed (``model.*``); ``omnitrain export`` writes
it as a codec folder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from omnitrain.config.typed import RunConfig
from omnitrain.registry import build
from omnitrain.training.stages.stage_module import StageModule


def codec_network(cfg: RunConfig) -> torch.nn.Module:
    """The network ``task=codec`` trains: the configured codec's, built for the run's mel."""
    return build("codec", cfg.codec).network().train()


class CodecModule(StageModule):
    def configure_model(self) -> None:
        if self.model is None:
            self.model = codec_network(self.cfg)

    def _frames(self, wave: Tensor) -> Tensor:
        frames = self.model.frames(wave)
        k = self.model.cfg.frames_per_code
        return frames[:, : frames.shape[1] // k * k]

    def _losses(self, wave: Tensor) -> dict[str, Tensor]:
        frames = self._frames(wave)
        out = self.model(frames)
        return {"spec_l1": F.l1_loss(out, frames), "spec_l2": F.mse_loss(out, frames)}

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        losses = self._losses(batch[1])
        bs = int(batch[1].shape[0])
        for name, value in losses.items():
            self.log(f"train/{name}", value, prog_bar=name == "spec_l1", batch_size=bs)
        loss = losses["spec_l1"] + losses["spec_l2"]
        self.log("train/loss", loss, batch_size=bs)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        losses = self._losses(batch[1])
        self.log("val/spec_l1", losses["spec_l1"], prog_bar=True, batch_size=int(batch[1].shape[0]), sync_dist=True)

    @torch.no_grad()
    def audio_sample(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        """The first validation segment through the codes, heard with Griffin-Lim."""
        return self.model.waveform(self.model(self._frames(batch[1][:1])), self.model.cfg.griffin_lim_iters)[0]

    def configure_optimizers(self):
        opt = self.cfg.optim
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps,
                                      weight_decay=opt.weight_decay)
        warmup = max(1, opt.warmup_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
