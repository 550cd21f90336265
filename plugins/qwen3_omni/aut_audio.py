"""Qwen3-Omni's AuT audio encoder, following transformers' ``Qwen3OmniMoeAudioEncoder``.

128-bin log-mel (Whisper's features) cut into chunks of ``2 * n_window`` frames (1 s), every
chunk zero-padded to the batch's longest chunk; three stride-2 Conv2d + GELU over
(mel, time); a Linear of the flattened (channels x mel) to ``d_model``; sinusoidal
positions restarting in every chunk; the first outputs of each chunk kept (13 per full
chunk: one token per 80 ms); pre-norm transformer layers (biased q/k/v) attending within
windows of ``n_window_infer`` frames' tokens; LayerNorm, Linear, GELU, Linear to the
Thinker's width. Parameter names are transformers' (``audio_tower.*`` without the prefix).

Two details of the reference are kept on purpose: chunks are padded to the longest chunk
of the batch (not masked between convs), and the attention window is counted from that
longest chunk's output length; both only matter for a batch whose clips are all shorter
than one chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.api import AudioEncoder, AudioFeatureExtractor, WhisperLogMel, register
from omnitrain.nn.segments import SegmentPlan, segment_attention
from omnitrain_plugins.qwen_omni.whisper_audio import sinusoids  # Whisper's table, as AuT's


@dataclass
class AuTAudioConfig:
    n_mels: int = 128
    d_model: int = 256  # the release: 1280
    layers: int = 4  # 32
    heads: int = 4  # 20
    ffn_dim: int = 1024  # 5120
    downsample_hidden_size: int = 64  # 480: channels of the Conv2d stem
    n_window: int = 50  # chunks of 2 * n_window mel frames (1 s)
    n_window_infer: int = 400  # attention windows of this many frames (800 in the release); a multiple of the chunk
    max_source_positions: int = 1500


def after_stem(frames: Tensor | int) -> Tensor | int:
    """Outputs of three stride-2 convs (kernel 3, padding 1) over ``frames`` inputs."""
    for _ in range(3):
        frames = (frames - 1) // 2 + 1
    return frames


def aut_token_count(frames: Tensor | int, n_window: int = 50) -> Tensor | int:
    """Tokens for ``frames`` mel frames: each full chunk of 2 * n_window frames gives
    after_stem(chunk) tokens, the rest after_stem(rest): transformers'
    ``_get_feat_extract_output_lengths``, which writes the 13 of the release's 100-frame
    chunks as a constant (and so serves only n_window=50)."""
    chunk = 2 * n_window
    return after_stem(frames % chunk) + (frames // chunk) * after_stem(chunk)


class AuTLogMel(WhisperLogMel):
    """Whisper's 128-bin log-mel; AuT's token count."""

    def __init__(self, n_mels: int = 128, n_window: int = 50) -> None:
        super().__init__(n_mels)
        self.n_window = n_window

    def num_tokens(self, frames: int) -> int:
        return aut_token_count(frames, self.n_window)


class AuTAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: Tensor, plan: SegmentPlan) -> Tensor:
        N, d = x.shape
        q, k, v = (p(x).view(N, self.heads, d // self.heads) for p in (self.q_proj, self.k_proj, self.v_proj))
        return self.out_proj(segment_attention(q, k, v, plan).reshape(N, d))


class AuTLayer(nn.Module):
    """Pre-norm: LayerNorm, windowed attention, LayerNorm, GELU MLP."""

    def __init__(self, d: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.self_attn = AuTAttention(d, heads)
        self.final_layer_norm = nn.LayerNorm(d)
        self.fc1, self.fc2 = nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, x: Tensor, plan: SegmentPlan) -> Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), plan)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


@dataclass
class ChunkLayout:
    """Found on the host from the clip lengths: where each chunk's frames come from, which
    stem outputs are tokens, and each token's attention window."""

    clip: Tensor  # (C,) the clip of each chunk
    frame: Tensor  # (C, width) source frame of each chunk position (clamped where padding)
    real: Tensor  # (C, width) 1 at real frames, 0 at padding
    kept: Tensor  # flat (C * after_stem(width)) positions that are tokens, in clip order
    windows: Tensor  # (tokens,) the attention window of each token

    @classmethod
    def build(cls, lengths: Tensor, n_window: int, n_window_infer: int) -> ChunkLayout:
        lengths, chunk = lengths.cpu().long(), 2 * n_window
        per_clip = (lengths + chunk - 1) // chunk
        clip = torch.arange(len(lengths)).repeat_interleave(per_clip)
        start = (torch.arange(len(clip)) - (per_clip.cumsum(0) - per_clip)[clip]) * chunk
        size = (lengths[clip] - start).clamp(max=chunk)
        width = int(size.max())
        offset = torch.arange(width)
        frame = start[:, None] + offset
        real = offset < size[:, None]
        out_width = after_stem(width)
        kept = (torch.arange(out_width) < after_stem(size)[:, None]).view(-1).nonzero()[:, 0]
        window = out_width * (n_window_infer // chunk)
        tokens = aut_token_count(lengths, n_window)
        owner = torch.arange(len(lengths)).repeat_interleave(tokens)
        index = torch.arange(int(tokens.sum())) - (tokens.cumsum(0) - tokens)[owner]
        first_window = ((tokens + window - 1) // window).cumsum(0) - (tokens + window - 1) // window
        return cls(clip, frame, real, kept, first_window[owner] + index // window)


@register("audio_encoder", "qwen3_aut", config=AuTAudioConfig)
class AuTAudioEncoder(AudioEncoder):
    """Qwen3-Omni's audio tower: Conv2d stem per 1 s chunk, windowed attention, 80 ms tokens."""

    block_types = (AuTLayer,)

    def __init__(self, cfg: AuTAudioConfig, out_dim: int) -> None:
        super().__init__()
        if cfg.d_model % cfg.heads or cfg.n_window_infer % (2 * cfg.n_window):
            raise ValueError("audio_encoder: d_model must be divisible by heads and n_window_infer a multiple "
                             "of 2 * n_window")
        self.cfg = cfg
        ds = cfg.downsample_hidden_size
        self.conv2d1 = nn.Conv2d(1, ds, 3, 2, padding=1)
        self.conv2d2 = nn.Conv2d(ds, ds, 3, 2, padding=1)
        self.conv2d3 = nn.Conv2d(ds, ds, 3, 2, padding=1)
        self.conv_out = nn.Linear(ds * after_stem(cfg.n_mels), cfg.d_model, bias=False)
        self.layers = nn.ModuleList(AuTLayer(cfg.d_model, cfg.heads, cfg.ffn_dim) for _ in range(cfg.layers))
        self.ln_post = nn.LayerNorm(cfg.d_model)
        self.proj1 = nn.Linear(cfg.d_model, cfg.d_model)
        self.proj2 = nn.Linear(cfg.d_model, out_dim)
        self.register_buffer("positions", sinusoids(cfg.max_source_positions, cfg.d_model), persistent=False)

    @classmethod
    def feature_extractor(cls, cfg: AuTAudioConfig) -> AudioFeatureExtractor:
        return AuTLogMel(cfg.n_mels, cfg.n_window)

    @classmethod
    def layer_positions(cls, lengths: Tensor) -> Tensor:
        """The layers run on the tokens (the release's 1 s chunks: 13 per chunk)."""
        return aut_token_count(lengths)

    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        device = features.device
        plan = ChunkLayout.build(lengths, self.cfg.n_window, self.cfg.n_window_infer)
        clip, frame = plan.clip.to(device, non_blocking=True), plan.frame.to(device, non_blocking=True)
        real = plan.real.to(device, non_blocking=True)
        safe = frame.clamp(max=features.shape[-1] - 1)
        chunks = features[clip[:, None], :, safe].transpose(1, 2) * real[:, None].to(features.dtype)
        h = chunks[:, None].to(self.conv2d1.weight.dtype)  # (C, 1, mels, width)
        for conv in (self.conv2d1, self.conv2d2, self.conv2d3):
            h = F.gelu(conv(h))
        C, ch, f, t = h.shape
        h = self.conv_out(h.permute(0, 3, 1, 2).reshape(C, t, ch * f))
        h = h + self.positions[:t].to(h)  # restarting in every chunk
        x = h.flatten(0, 1)[plan.kept.to(device, non_blocking=True)]
        windows = SegmentPlan.build(plan.windows, device)
        for layer in self.layers:
            x = layer(x, windows)
        return self.proj2(F.gelu(self.proj1(self.ln_post(x))))
