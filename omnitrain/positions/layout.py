"""The segment layout of one Thinker input sequence.

A sample is built segment by segment (text, audio, image, video), so its layout is
known before any token is scanned. Positional schemes compute ids from this layout,
never by searching the token ids.

Media segments include their bos/eos tokens: an audio segment of ``n`` tokens spans
``n + 2`` positions; a video with its audio track spans ``video + audio + 4``
(``<vision_bos><audio_bos> body <audio_eos><vision_eos>``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextSeg:
    n: int

    @property
    def span(self) -> int:
        return self.n


@dataclass(frozen=True)
class AudioSeg:
    n: int  # audio tokens (one per 40 ms)

    @property
    def span(self) -> int:
        return self.n + 2


@dataclass(frozen=True)
class ImageSeg:
    grid: tuple[int, int, int]  # (t, h, w) in LLM tokens, i.e. after spatial merge

    @property
    def tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def span(self) -> int:
        return self.tokens + 2


@dataclass(frozen=True)
class VideoSeg:
    grid: tuple[int, int, int]  # (t, h, w) in LLM tokens, t = frame groups
    second_per_grid: float  # seconds covered by one temporal grid step
    audio_tokens: int = 0  # > 0: the video's own audio track is interleaved

    @property
    def tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def span(self) -> int:
        if self.audio_tokens:
            return self.tokens + self.audio_tokens + 4
        return self.tokens + 2


Segment = TextSeg | AudioSeg | ImageSeg | VideoSeg


def layout_length(layout: list[Segment]) -> int:
    return sum(seg.span for seg in layout)


def check_layout(layout: list[Segment]) -> None:
    """Raise ``ValueError`` naming the first segment whose shape is impossible."""
    for i, seg in enumerate(layout):
        problem = None
        if isinstance(seg, TextSeg) and seg.n < 0:
            problem = "negative length"
        elif isinstance(seg, AudioSeg) and seg.n < 1:
            problem = "an audio segment needs at least one token"
        elif isinstance(seg, ImageSeg | VideoSeg) and (len(seg.grid) != 3 or min(seg.grid) < 1):
            problem = f"grid {seg.grid} must be three positive sizes"
        elif isinstance(seg, VideoSeg) and not seg.second_per_grid > 0:
            problem = (f"second_per_grid={seg.second_per_grid} must be > 0 "
                       "(temporal_patch_size / fps with a positive fps)")
        elif isinstance(seg, VideoSeg) and seg.audio_tokens < 0:
            problem = "negative audio token count"
        if problem:
            raise ValueError(f"layout segment {i} ({seg}): {problem}")
