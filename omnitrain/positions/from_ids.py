"""Recover segment layouts from token ids, for callers migrating from transformers.

transformers' Qwen2.5-Omni ``get_rope_index`` takes token ids plus per-item grids and
audio lengths. This turns the same inputs into omnitrain layouts, checking that the
token counts agree with the grids (transformers assumes they do and silently misplaces
every later id when they do not). Work is per segment: start tokens are found with one
tensor comparison per row; no Python loop runs over tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from omnitrain.positions.layout import AudioSeg, ImageSeg, Segment, TextSeg, VideoSeg


def audio_tokens_from_frames(frames: int) -> int:
    """Qwen2.5-Omni audio encoder output length for ``frames`` mel frames (10 ms each)."""
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


@dataclass(frozen=True)
class TokenIds:
    """The ids ``rope_index`` needs (transformers config: image_token_id, ...)."""

    image: int
    video: int
    audio: int
    vision_bos: int
    audio_bos: int

    @classmethod
    def of(cls, value: TokenIds | Mapping[str, int]) -> TokenIds:
        if isinstance(value, TokenIds):
            return value
        missing = {"image", "video", "audio", "vision_bos", "audio_bos"} - set(value)
        if missing:
            raise ValueError(f"token_ids is missing {sorted(missing)}")
        return cls(**{k: int(value[k]) for k in ("image", "video", "audio", "vision_bos", "audio_bos")})


class _Cursor:
    """Consumes grids, audio lengths and seconds-per-grid in batch order, as transformers does."""

    def __init__(self, items: Tensor | None, name: str) -> None:
        self.items = [] if items is None else items.tolist()
        self.name, self.i = name, 0

    def take(self, where: str):
        if self.i >= len(self.items):
            raise ValueError(f"{where}: the ids hold more {self.name} items than the {len(self.items)} given")
        self.i += 1
        return self.items[self.i - 1]

    def check_used(self) -> None:
        if self.i != len(self.items):
            raise ValueError(
                f"{len(self.items)} {self.name} items were given but the ids hold {self.i}: "
                "token counts and grids disagree"
            )


def _run_length(row: Tensor, start: int, token: int) -> int:
    """Number of consecutive ``token`` ids from ``start``."""
    rest = row[start:] != token
    hit = rest.nonzero()
    return int(hit[0]) if hit.numel() else int(rest.numel())


def layouts_from_ids(
    rows: list[Tensor],
    image_grid_thw: Tensor | None,
    video_grid_thw: Tensor | None,
    use_audio_in_video: bool,
    audio_seqlens: Tensor | None,
    second_per_grids: Tensor | None,
    token_ids: TokenIds,
    spatial_merge_size: int = 2,
    audio_tokens: Callable[[int], int] = audio_tokens_from_frames,
) -> list[list[Segment]]:
    """One layout per row of real (unpadded) token ids. Raises ``ValueError`` naming the
    row and item when the ids disagree with the grids or audio lengths. ``audio_tokens``:
    the audio encoder's tokens for a clip of n mel frames (default Qwen2.5-Omni's)."""
    tok, m = token_ids, spatial_merge_size
    images, videos = _Cursor(image_grid_thw, "image"), _Cursor(video_grid_thw, "video")
    audios, spgs = _Cursor(audio_seqlens, "audio"), _Cursor(second_per_grids, "second_per_grids")
    layouts = []
    for r, row in enumerate(rows):
        vbos = row == tok.vision_bos
        abos = row == tok.audio_bos
        after_vbos = torch.zeros_like(abos)
        after_vbos[1:] = vbos[:-1]
        starts = (vbos | (abos & ~after_vbos)).nonzero()[:, 0].tolist()
        layout: list[Segment] = []
        pos = 0
        for p in starts:
            if p < pos:  # an audio_bos inside a video segment already consumed
                continue
            where = f"row {r}, position {p}"
            if p > pos:
                layout.append(TextSeg(p - pos))
            seg = _segment(row, p, where, images, videos, audios, spgs, use_audio_in_video, tok, m, audio_tokens)
            layout.append(seg)
            pos = p + seg.span
            if pos > row.numel():
                raise ValueError(f"{where}: {seg} needs {seg.span} tokens but the row ends first")
        if pos < row.numel():
            layout.append(TextSeg(row.numel() - pos))
        layouts.append(layout)
    for cursor in (images, videos, audios):
        cursor.check_used()
    return layouts


def _segment(row, p, where, images, videos, audios, spgs, use_audio_in_video, tok, m, audio_tokens) -> Segment:
    first = int(row[p])
    nxt = int(row[p + 1]) if p + 1 < row.numel() else -1
    if first == tok.audio_bos:
        frames = audios.take(where)
        n = audio_tokens(int(frames))
        found = _run_length(row, p + 1, tok.audio)
        if found != n:
            raise ValueError(
                f"{where}: audio of {frames} mel frames gives {n} tokens but the ids hold {found} "
                "<AUDIO> tokens"
            )
        return AudioSeg(n)
    if nxt == tok.image:
        t, h, w = images.take(where)
        seg = ImageSeg((t, h // m, w // m))
        _expect_run(row, p + 1, tok.image, seg.tokens, where, f"image grid {(t, h, w)}")
        return seg
    if nxt in (tok.video, tok.audio_bos):
        t, h, w = videos.take(where)
        spg = float(spgs.take(where)) if spgs.items else 1.0
        if not spg > 0:
            raise ValueError(f"{where}: second_per_grids={spg} must be > 0 (fps must be positive)")
        grid = (t, h // m, w // m)
        if not use_audio_in_video:
            seg = VideoSeg(grid, spg)
            _expect_run(row, p + 1, tok.video, seg.tokens, where, f"video grid {(t, h, w)}")
            return seg
        if nxt != tok.audio_bos:
            raise ValueError(f"{where}: use_audio_in_video=True but this video has no <audio_bos>")
        frames = audios.take(where)
        seg = VideoSeg(grid, spg, audio_tokens(int(frames)))
        body = row[p + 2 : p + 2 + seg.tokens + seg.audio_tokens]
        n_video, n_audio = int((body == tok.video).sum()), int((body == tok.audio).sum())
        if (n_video, n_audio) != (seg.tokens, seg.audio_tokens):
            raise ValueError(
                f"{where}: video grid {(t, h, w)} with {frames} audio frames needs {seg.tokens} <VIDEO> "
                f"and {seg.audio_tokens} <AUDIO> tokens; the ids hold {n_video} and {n_audio}"
            )
        return seg
    if use_audio_in_video and nxt == tok.video:
        raise ValueError(f"{where}: use_audio_in_video=True but this video has no <audio_bos>")
    raise ValueError(f"{where}: <vision_bos> is followed by id {nxt}, not an image or video token")


def _expect_run(row: Tensor, start: int, token: int, n: int, where: str, what: str) -> None:
    found = _run_length(row, start, token)
    if found != n:
        raise ValueError(f"{where}: {what} needs {n} tokens but the ids hold {found}")
