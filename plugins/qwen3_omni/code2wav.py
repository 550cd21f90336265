"""Qwen3-Omni's Code2Wav (transformers' ``Qwen3OmniMoeCode2Wav``, its parameter names):
frames of code groups straight to a 24 kHz waveform, no mel and no DiT (``dit=none``).

Each frame's groups are embedded (one table, each group's ids offset by the codebook size)
and averaged; a causal transformer with sliding-window attention (``sliding_window`` frames,
rotary positions, layer-scaled residuals) runs over them; causal transposed convolutions
with ConvNeXt blocks upsample 4x (``upsampling_ratios``); a causal convolutional decoder with
SnakeBeta activations and dilated residual units upsamples by ``upsample_rates`` to samples
(480 per frame in the release: 12.5 frames a second), clamped to [-1, 1].

The convolutions are causal, but each transposed convolution (kernel 2r, stride r, r cut
from both ends) reads its next input step: a frame's samples depend on the next frame's
codes (``right_context_codes`` = 2 bounds the look-ahead) and on up to
``receptive_field_codes`` frames before it. Streaming with that much context on both sides
equals whole decoding. The release streams with 25 frames before a chunk and none after
(transformers' ``chunked_decode``, ``left_context_codes``): cheaper, close rather than equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.api import CodesVocoder, SpeechCondition, register
from omnitrain.nn.attention import Attention
from omnitrain.nn.blocks import SwiGLU
from omnitrain.nn.norms import RMSNorm
from omnitrain.nn.rotary import rotary_1d


@dataclass
class Code2WavConfig:
    hidden_size: int = 64  # the release: 1024
    layers: int = 2  # 8
    heads: int = 4  # 16 (no grouped KV heads)
    intermediate_size: int = 128  # 3072
    sliding_window: int = 72  # frames each frame attends back over (itself included)
    rope_theta: float = 10000.0
    rms_eps: float = 1e-5
    layer_scale: float = 0.01  # the residual branches' initial scale
    upsampling_ratios: list[int] = field(default_factory=lambda: [2, 2])  # transformer rate -> decoder rate
    upsample_rates: list[int] = field(default_factory=lambda: [8, 5, 4, 3])  # decoder blocks: 480 samples a frame
    decoder_dim: int = 96  # 1536: the decoder's first width, halved by each block
    left_context_codes: int = 25  # streaming: frames decoded before each chunk (the release's)
    mel_loss_weight: float = 0.0  # loss.weights.code2wav_mel: above 0 trains it in the omni task (0: frozen)


class CausalConv(nn.Module):
    """Conv1d padded on the left only (and on the right to whole strides): no look-ahead."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride=stride, dilation=dilation, groups=groups)
        self.stride, self.span = stride, (kernel - 1) * dilation + 1
        self.padding = self.span - stride

    def forward(self, x: Tensor) -> Tensor:
        length = x.shape[-1]
        frames = math.ceil((length - self.span + self.padding) / self.stride + 1)
        extra = (frames - 1) * self.stride + (self.span - self.padding) - length
        return self.conv(F.pad(x, (self.padding, extra)))


class CausalTransConv(nn.Module):
    """ConvTranspose1d with its ``kernel - stride`` overhang cut from both ends."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose1d(cin, cout, kernel, stride=stride)
        self.trim = kernel - stride

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return y[..., self.trim:y.shape[-1] - self.trim]


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = CausalConv(dim, dim, 7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(self.dwconv(x).transpose(1, 2))
        y = self.gamma * self.pwconv2(F.gelu(self.pwconv1(y)))
        return x + y.transpose(1, 2)


class SnakeBeta(nn.Module):
    """x + sin^2(x e^alpha) / e^beta, per channel (alpha and beta stored as logs)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        alpha, beta = self.alpha.exp()[None, :, None], self.beta.exp()[None, :, None]
        return x + (1.0 / (beta + 1e-9)) * torch.sin(x * alpha).pow(2)


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int) -> None:
        super().__init__()
        self.act1, self.conv1 = SnakeBeta(dim), CausalConv(dim, dim, 7, dilation=dilation)
        self.act2, self.conv2 = SnakeBeta(dim), CausalConv(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(self.act2(self.conv1(self.act1(x))))


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, cout: int, rate: int) -> None:
        super().__init__()
        self.block = nn.ModuleList([SnakeBeta(cin), CausalTransConv(cin, cout, 2 * rate, rate),
                                    *(ResidualUnit(cout, d) for d in (1, 3, 9))])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.block:
            x = layer(x)
        return x


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x


class TransformerLayer(nn.Module):
    def __init__(self, cfg: Code2WavConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(d, cfg.rms_eps), RMSNorm(d, cfg.rms_eps)
        self.self_attn = Attention(d, cfg.heads)
        self.mlp = SwiGLU(d, cfg.intermediate_size)
        self.self_attn_layer_scale = LayerScale(d, cfg.layer_scale)
        self.mlp_layer_scale = LayerScale(d, cfg.layer_scale)

    def forward(self, x: Tensor, mask: Tensor, rotary: tuple[Tensor, Tensor]) -> Tensor:
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), mask, rotary))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class PreTransformer(nn.Module):
    def __init__(self, cfg: Code2WavConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_eps)

    def forward(self, x: Tensor) -> Tensor:
        n, head_dim = x.shape[1], self.cfg.hidden_size // self.cfg.heads
        pos = torch.arange(n, device=x.device)
        rotary = rotary_1d(pos, head_dim, self.cfg.rope_theta, x.dtype)
        back = pos[:, None] - pos[None]
        mask = (back >= 0) & (back < self.cfg.sliding_window)  # causal, within the window
        for layer in self.layers:
            x = layer(x, mask, rotary)
        return self.norm(x)


@register("vocoder", "code2wav", config=Code2WavConfig)
class Code2Wav(CodesVocoder):
    """Qwen3-Omni's codes-to-waveform decoder (pairs with ``dit=none``)."""

    takes_code_groups = True
    build_kwargs = ("codec_vocab_size", "num_speakers", "code_groups")
    right_context_codes = 2  # the transposed convolutions' look-ahead: 1 + 1/2 + ... frames

    def __init__(self, cfg: Code2WavConfig, mel=None, codec_vocab_size: int = 2048, num_speakers: int = 1,
                 code_groups: int = 1) -> None:
        super().__init__()
        self.cfg, self.codebook, self.groups = cfg, codec_vocab_size, code_groups
        self.speech_mel = mel  # the run's SpeechMel (not a module: no weights), for the mel loss
        self.left_context_codes = cfg.left_context_codes
        self.code_embedding = nn.Embedding(codec_vocab_size * code_groups, cfg.hidden_size)
        self.pre_transformer = PreTransformer(cfg)
        self.upsample = nn.ModuleList(
            nn.ModuleList([CausalTransConv(cfg.hidden_size, cfg.hidden_size, r, r), ConvNeXtBlock(cfg.hidden_size)])
            for r in cfg.upsampling_ratios)
        dims = [cfg.decoder_dim // 2**i for i in range(len(cfg.upsample_rates) + 1)]
        self.decoder = nn.ModuleList([
            CausalConv(cfg.hidden_size, cfg.decoder_dim, 7),
            *(DecoderBlock(dims[i], dims[i + 1], r) for i, r in enumerate(cfg.upsample_rates)),
            SnakeBeta(dims[-1]), CausalConv(dims[-1], 1, 7)])

    @classmethod
    def named_losses(cls, cfg: Code2WavConfig) -> dict[str, float]:
        return {"code2wav_mel": cfg.mel_loss_weight}

    def loss(self, codes: Tensor, code_mask: Tensor, mel: Tensor) -> dict[str, Tensor]:
        """``code2wav_mel``: L1 between the run's normalised log-mel (``speech``) of the decoded
        replies and the replies' own, over their real frames: a reconstruction loss that trains
        Code2Wav (the release was trained adversarially; this is the plain baseline)."""
        if self.speech_mel is None:
            raise ValueError("vocoder=code2wav was built without the run's SpeechMel: its mel loss cannot run")
        frames = mel.shape[1]
        made = self.speech_mel(self.decode(codes, code_mask))[:, :frames]
        real = code_mask.repeat_interleave(frames // code_mask.shape[1], dim=1)[..., None].to(made.dtype)
        return {"code2wav_mel": ((made - mel.to(made.dtype)).abs() * real).sum() / (real.sum() * mel.shape[-1])}

    @classmethod
    def samples_per_code(cls, cfg: Code2WavConfig) -> int:
        return math.prod(cfg.upsampling_ratios) * math.prod(cfg.upsample_rates)

    def receptive_field_codes(self) -> int:
        """A bound on the frames before a frame that its samples depend on: the attention
        windows' reach, then each causal convolution's (kernel 7: 6 steps back, dilated in
        the residual units) counted in frames at its stage's rate, rounded up."""
        reach, rate = 0.0, 1  # steps per frame at the current stage
        for r in self.cfg.upsampling_ratios:
            rate *= r
            reach += 6 / rate  # the ConvNeXt block's depthwise conv
        reach += 6 / rate  # the decoder's first conv
        for r in self.cfg.upsample_rates:
            rate *= r
            reach += 6 * (1 + 3 + 9) / rate  # the block's three residual units
        reach += 6 / rate  # the last conv
        return self.cfg.layers * (self.cfg.sliding_window - 1) + math.ceil(reach)

    def decode(self, codes: Tensor, code_mask: Tensor, cond: SpeechCondition | None = None) -> Tensor:
        """Codes (B, C, groups) (or (B, C) with one group) -> (B, C * samples_per_code).
        transformers' decode is shorter by what each decoder block's transposed convolution
        cuts (its last step, a fraction of a frame); those last samples are zeros here, as are
        the samples of masked frames. Padding after a row's codes changes its samples only in
        the last ``right_context_codes`` frames."""
        if codes.dim() == 2:
            codes = codes[..., None]
        offset = torch.arange(codes.shape[-1], device=codes.device) * self.codebook
        x = self.code_embedding(codes.clamp(0, self.codebook - 1) + offset).mean(2)
        x = self.pre_transformer(x).transpose(1, 2)
        for blocks in self.upsample:
            for block in blocks:
                x = block(x)
        for block in self.decoder:
            x = block(x)
        per_code = self.samples_per_code(self.cfg)
        wave = F.pad(x[:, 0].clamp(-1, 1), (0, codes.shape[1] * per_code - x.shape[-1]))
        return wave * code_mask.repeat_interleave(per_code, dim=1).to(wave.dtype)
