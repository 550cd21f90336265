"""``codec=fsq``: a speech codec omnitrain trains (``task=codec``) from the shards' speech.

Log-magnitude STFT frames (8 ms hop, 257 bins) -> a convolutional encoder that steps down to
one frame per ``frames_per_code`` STFT frames (40 ms codes) -> finite scalar quantisation
(FSQ, Mentzer et al. 2023: each latent dimension bounded and rounded to one of ``levels[i]``
values, no codebook to collapse) in ``groups`` independent groups -> codes; a convolutional
decoder back to the log-magnitude frames, then Griffin-Lim to a waveform (``decode``, and
``vocoder=fsq``, the codes' own decoder for models with no DiT). A linear spectrogram, not
mel: Griffin-Lim from 80 mel bands loses some of what the offline recogniser needs (the spoken
demo's 48 held-out recordings: WER 0.083 as they are, 0.135 through mel, 0.052 through these
frames; benchmarks/speech_roundtrip.py), so the codec keeps the harmonics. All convolutions are local (a code hears about
0.5 s), so a word's codes barely depend on the words around it.

The codes carry the voice as well as the words: who speaks is told to the Talker (its
speaker vector, as Qwen3-Omni's speaker rows) and the codes' decoder needs no speaker
reference. ``omnitrain export`` of a ``task=codec`` run writes a folder (``codec.json`` +
``model.safetensors``) that ``codec.path`` (or ``--codec FOLDER``) reads.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio
from safetensors.torch import load_file
from torch import Tensor, nn

from omnitrain.api import CodesVocoder, SpeechCondition, TrainableCodec, register


@dataclass
class FsqConfig:
    path: str = ""  # a trained codec's folder (export of a task=codec run); "" = untrained (task=codec)
    groups: int = 1  # codes a frame
    levels: list[int] = field(default_factory=lambda: [8, 5, 5, 5])  # FSQ levels of each group: 1000 codes
    sample_rate: int = 16000
    n_fft: int = 512
    hop_length: int = 128  # STFT frames of 8 ms
    frames_per_code: int = 5  # 40 ms codes: 25 a second
    dim: int = 256
    layers: int = 3  # residual conv blocks each side
    griffin_lim_iters: int = 64  # decode() -> waveform


LOG_FLOOR, LOG_MEAN, LOG_STD = 1e-5, -5.0, 3.0  # log-magnitudes to roughly zero mean, unit spread


class ResidualConv(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(dim, dim, 5, padding=2)
        self.conv2 = nn.Conv1d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


class FsqNet(nn.Module):
    """Frames (B, T, bins), T a multiple of ``frames_per_code`` <-> codes (B, T / k, groups)."""

    def __init__(self, cfg: FsqConfig) -> None:
        super().__init__()
        self.cfg = cfg
        bins, d, k, width = cfg.n_fft // 2 + 1, cfg.dim, cfg.frames_per_code, len(cfg.levels)
        self.register_buffer("levels", torch.tensor(cfg.levels, dtype=torch.long), persistent=False)
        radix = torch.cumprod(torch.tensor([1, *cfg.levels[:-1]]), 0)
        self.register_buffer("radix", radix, persistent=False)
        # steps down first and up last: the blocks run at the code rate (5x cheaper on a CPU)
        self.encoder = nn.Sequential(nn.Conv1d(bins, d, k, stride=k),
                                     *[ResidualConv(d) for _ in range(cfg.layers)], nn.GELU())
        self.to_latent = nn.Linear(d, cfg.groups * width)
        self.from_latent = nn.Linear(cfg.groups * width, d)
        self.decoder = nn.Sequential(*[ResidualConv(d) for _ in range(cfg.layers)], nn.GELU(),
                                     nn.ConvTranspose1d(d, d, k, stride=k), ResidualConv(d), nn.GELU())
        self.out = nn.Linear(d, bins)

    def frames(self, wave: Tensor) -> Tensor:
        """Waveforms (B, T) -> normalised log-magnitude frames (B, T // hop, bins)."""
        c = self.cfg
        spec = torch.stft(wave.float(), c.n_fft, c.hop_length, window=torch.hann_window(c.n_fft, device=wave.device),
                          return_complex=True).abs()
        return ((spec.clamp_min(LOG_FLOOR).log() - LOG_MEAN) / LOG_STD).transpose(1, 2)[:, : wave.shape[-1] // c.hop_length]

    def quantise(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """-> (digits (B, n, groups, width) int64, their values in [-1, 1] with straight-through gradients)."""
        h = self.encoder(frames.transpose(1, 2)).transpose(1, 2)
        z = self.to_latent(h).unflatten(-1, (self.cfg.groups, len(self.cfg.levels)))
        top = (self.levels - 1).to(z.dtype)
        y = torch.sigmoid(z) * top
        q = y + (torch.round(y) - y).detach()
        return torch.round(y).long(), q / top * 2 - 1

    def decode_values(self, values: Tensor) -> Tensor:
        h = self.from_latent(values.flatten(-2))
        return self.out(self.decoder(h.transpose(1, 2)).transpose(1, 2))

    def forward(self, frames: Tensor) -> Tensor:
        """The reconstruction the codec is trained by."""
        return self.decode_values(self.quantise(frames)[1])

    def codes(self, digits: Tensor) -> Tensor:
        return (digits * self.radix).sum(-1)

    def values(self, codes: Tensor) -> Tensor:
        digits = (codes[..., None] // self.radix) % self.levels
        return digits.float() / (self.levels - 1) * 2 - 1

    def waveform(self, frames: Tensor, iters: int) -> Tensor:
        """Normalised frames (B, T, bins) -> (B, T * hop) by Griffin-Lim (fixed seed: the same frames, the same wave)."""
        c = self.cfg
        magnitude = (frames.float() * LOG_STD + LOG_MEAN).exp().transpose(1, 2)
        magnitude = F.pad(magnitude, (0, 1), mode="replicate")  # centred frames: T * hop samples have T + 1
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            wave = torchaudio.functional.griffinlim(
                magnitude, torch.hann_window(c.n_fft, device=frames.device), c.n_fft, c.hop_length, c.n_fft,
                power=1.0, n_iter=iters, momentum=0.99, length=frames.shape[1] * c.hop_length, rand_init=True)
        return wave


def _settings(cfg: FsqConfig) -> FsqConfig:
    """The config a trained folder's codec.json fixes (only ``path`` comes from the run)."""
    if not cfg.path:
        return cfg
    folder = Path(cfg.path)
    if not (folder / "codec.json").is_file():
        raise FileNotFoundError(f"codec.path='{cfg.path}' has no codec.json: give the folder `omnitrain export` wrote "
                                "for a task=codec run")
    meta = json.loads((folder / "codec.json").read_text())
    return dataclasses.replace(FsqConfig(**meta["config"]), path=str(folder))


@register("codec", "fsq", config=FsqConfig)
class FsqCodec(TrainableCodec):
    """FSQ over log-magnitude frames, trained by ``task=codec``; decoded by its own decoder + Griffin-Lim."""

    def __init__(self, cfg: FsqConfig) -> None:
        self.trained = bool(cfg.path)
        cfg = _settings(cfg)
        if cfg.groups < 1 or not cfg.levels or min(cfg.levels) < 2:
            raise ValueError(f"codec=fsq: groups >= 1 and levels of 2 or more each, got groups={cfg.groups} "
                             f"levels={list(cfg.levels)}")
        self.cfg = cfg
        self.groups = cfg.groups
        self.vocab_size = math.prod(cfg.levels)
        self.sample_rate = cfg.sample_rate
        self.hop = cfg.hop_length * cfg.frames_per_code
        self.frame_rate = self.sample_rate / self.hop
        self._net: FsqNet | None = None

    def network(self) -> FsqNet:
        """The network (task=codec trains it; a trained codec's weights loaded)."""
        if self._net is None:
            self._net = FsqNet(self.cfg)
            if self.trained:
                self._net.load_state_dict(load_file(Path(self.cfg.path) / "model.safetensors"))
            self._net.eval()
        return self._net

    def _need_weights(self) -> FsqNet:
        if not self.trained:
            raise ValueError("codec=fsq has no weights: train it (omnitrain train task=codec codec=fsq ...), export it "
                             "(omnitrain export CKPT DIR) and give codec.path=DIR or --codec DIR")
        return self.network()

    @torch.no_grad()
    def encode(self, wave: Tensor) -> Tensor:
        net = self._need_weights()
        wave = torch.as_tensor(wave, dtype=torch.float32).reshape(-1)
        n = wave.numel() // self.hop
        if n == 0:
            return torch.zeros((0,) if self.groups == 1 else (0, self.groups), dtype=torch.long)
        frames = net.frames(wave[None])[:, : n * self.cfg.frames_per_code]
        codes = net.codes(net.quantise(frames)[0])[0]  # (n, groups)
        return codes[:, 0] if self.groups == 1 else codes

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        net = self._need_weights()
        codes = torch.as_tensor(tokens, dtype=torch.long).reshape(-1, self.groups).clamp(0, self.vocab_size - 1)
        if codes.shape[0] == 0:
            return torch.zeros(0)
        return net.waveform(net.decode_values(net.values(codes)[None]), self.cfg.griffin_lim_iters)[0]

    def describe(self) -> dict[str, Any]:
        """What ``codec.json`` holds: the plugin and its settings."""
        cfg = {f.name: getattr(self.cfg, f.name) for f in dataclasses.fields(self.cfg) if f.name != "path"}
        cfg["levels"] = list(cfg["levels"])
        return {"plugin": "fsq", "config": cfg}


@dataclass
class FsqVocoderConfig:
    path: str = "${oc.select:codec.path,''}"  # the trained codec's folder: codec.path unless given


@register("vocoder", "fsq", config=FsqVocoderConfig)
class FsqVocoder(CodesVocoder):
    """``codec=fsq``'s own decoder as the model's codes decoder (pairs with ``dit=none``):
    its weights are the codec's, trained by task=codec, frozen here (no trainable parameters)."""

    left_context_codes = 8

    def __init__(self, cfg: FsqVocoderConfig, mel: Any = None, codec_vocab_size: int = 0, num_speakers: int = 1) -> None:
        super().__init__()
        if not cfg.path:
            raise ValueError("vocoder=fsq decodes with a trained codec=fsq: give codec.path (or vocoder.path) = the "
                             "folder omnitrain export wrote for its task=codec run")
        self.codec = FsqCodec(FsqConfig(path=str(cfg.path)))

    @staticmethod
    def check_config(cfg: FsqVocoderConfig, speech: Any) -> list[str]:
        if not cfg.path:
            return ["vocoder=fsq decodes with a trained codec=fsq but vocoder.path is empty: use codec=fsq "
                    "codec.path=FOLDER (vocoder.path follows codec.path) or set vocoder.path"]
        try:
            rate = _settings(FsqConfig(path=str(cfg.path))).sample_rate
        except FileNotFoundError as exc:
            return [f"vocoder=fsq: {exc}"]
        if rate != speech.sample_rate:
            return [f"vocoder=fsq decodes at {rate} Hz ({cfg.path}) but speech.sample_rate={speech.sample_rate}: "
                    f"set speech.sample_rate={rate}"]
        return []

    @classmethod
    def samples_per_code(cls, cfg: Any) -> int:
        settings = _settings(FsqConfig(path=str(cfg.path))) if cfg.path else FsqConfig()
        return settings.hop_length * settings.frames_per_code

    def decode(self, codes: Tensor, code_mask: Tensor, cond: SpeechCondition | None = None) -> Tensor:
        return self.decode_rows(codes, code_mask, lambda real: self.codec.decode(real.cpu()), self.codec.hop)
