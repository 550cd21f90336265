"""The batch the model consumes: one Thinker token grid plus per-item media and speech.

Rows may hold several samples (packing): ``doc_ids`` tell them apart (0 = padding).
Speech targets are indexed per sample, not per row, so packing needs no change here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch
from torch import Tensor

from omnitrain.nn.varlen import DocRuns
from omnitrain.tokens import IGNORE_INDEX


@dataclass
class BatchSizes:
    """A batch's sizes as plain ints, counted in collate from the samples: the throughput
    and FLOP meters read them every step, which on the device tensors would be a GPU
    round trip each time."""

    documents: list[int]  # tokens of each sample, in token order
    replies: list[tuple[int, int, int]]  # (prompt, reply, codec) tokens of each spoken reply


# sizes the model reads on the host to plan its work (chunks, windows, index lists)
HOST_FIELDS = ("audio_lengths", "vision_grids")


@dataclass
class Batch:
    input_ids: Tensor  # (B, L) int64
    position_ids: Tensor  # (rows, B, L) int64
    doc_ids: Tensor  # (B, L) int64, 0 = padding
    labels: Tensor  # (B, L) int64, IGNORE_INDEX where no text loss
    audio_features: Tensor  # (Na, n_mels, T) float, Na may be 0
    audio_lengths: Tensor  # (Na,) feature frames per clip; stays on the host (HOST_FIELDS)
    vision_patches: Tensor  # (Np, patch_dim) float, all images/videos concatenated
    vision_grids: Tensor  # (Nv, 3) patch grid (t, h, w) per item; stays on the host
    speech_rows: Tensor  # (S,) batch row of each sample with a spoken reply
    reply_positions: Tensor  # (S, R) positions of its reply tokens in that row
    reply_mask: Tensor  # (S, R) bool
    codec_tokens: Tensor  # (S, C) int64 codec ids of the spoken reply; (S, C, Q) with Q code groups
    codec_mask: Tensor  # (S, C) bool, per frame
    speech_mel: Tensor  # (S, C * mel_frames_per_code, n_mels) DiT targets
    keys: list[str] = field(default_factory=list)
    # who speaks each reply; empty: speaker 0 and no reference for all
    speaker_ids: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # (S,)
    reference_mel: Tensor = field(default_factory=lambda: torch.zeros(0, 1, 1))  # (S, T_ref, n_mels)
    reference_lengths: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    skipped: dict[str, int] = field(default_factory=dict)  # samples dropped upstream, by reason
    # (B, L) int8 each token's turn role (``omnitrain.tokens.ROLE_CODES``, 0 = padding or not
    # known): which turns the Talker reads (``ContextSpec.turns``)
    turn_roles: Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.int8))
    # where each document starts, found in the data workers so the step never reads it off
    # the GPU (varlen attention); None: the Thinker finds it (a host sync on a GPU)
    doc_runs: DocRuns | None = None
    # flat positions of the (B, L-1) next-token grid that carry a text target, found in the
    # data workers (the loss selects those rows without reading the GPU); None: found there.
    # A batch edited after collate (labels, doc_ids) must set both fields (and ``sizes``) to None
    target_index: Tensor | None = None
    sizes: BatchSizes | None = None  # None: count them from the tensors (reads the device)
    # where the batch stands in the data stream: {"pass", "position" (rank batch in the pass), "repeat"}
    stream: dict | None = None
    # this rank's ``loss_counts`` summed over the micro-batches of this batch's optimizer step
    # (``omnitrain.data.step_groups``), plus "micro_batches"; None: each loss is this batch's mean
    step_totals: dict[str, int] | None = None

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device``, except ``HOST_FIELDS``: the encoders lay out their chunks
        and windows from those sizes, and reading them on the host costs no GPU round trip.
        (Lightning moves a batch with this method.)"""
        non_blocking = torch.device(device).type != "cpu"  # host -> device copies only
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in HOST_FIELDS:
                moved[f.name] = value.cpu() if isinstance(value, Tensor) else value
            elif isinstance(value, Tensor):
                moved[f.name] = value.to(device, non_blocking=non_blocking)
            elif isinstance(value, DocRuns):
                moved[f.name] = value.to(device)
        return replace(self, **moved)

    @property
    def longest_prompt(self) -> int | None:
        """The most tokens before a spoken reply in its own sample (the Talker's prompt
        width), from ``sizes``; None without them."""
        return None if self.sizes is None else max((p for p, _, _ in self.sizes.replies), default=0)

    @property
    def num_tokens(self) -> int:
        return sum(self.sizes.documents) if self.sizes is not None else int((self.doc_ids != 0).sum())

    def loss_counts(self) -> dict[str, int]:
        """What each per-token loss of this batch sums over, counted as the losses count:
        "text" next-token targets, "codec" the Talker's targets (every spoken reply's codes
        and its eos, ``talker_inputs``), "flow" the DiT's mel frames (``flow_matching_loss``
        averages each frame over its mel bins). From ``target_index`` and ``sizes`` (host
        side, found in collate); a batch without them is counted from its tensors."""
        if self.target_index is not None:
            text = int(self.target_index.numel())
        else:
            same_doc = self.doc_ids[:, 1:] == self.doc_ids[:, :-1]
            text = int(((self.labels[:, 1:] != IGNORE_INDEX) & same_doc).sum())
        if self.sizes is not None:
            codes = [c for _, _, c in self.sizes.replies]
        else:
            codes = self.codec_mask.sum(1).tolist() if self.speech_rows.numel() else []
        # every reply's mel holds k frames per code; the longest sets both padded widths
        k = self.speech_mel.shape[1] // self.codec_tokens.shape[1] if codes else 0
        return {"text": text, "codec": sum(c + 1 for c in codes), "flow": sum(codes) * k}

    def prompt_lengths(self) -> Tensor:
        """(S,) tokens before each spoken reply in its own sample (rows may hold several)."""
        rows, start = self.speech_rows, self.reply_positions[:, 0]
        doc = self.doc_ids[rows, start]
        L = self.doc_ids.shape[1]
        before = torch.arange(L, device=start.device)[None] < start[:, None]
        return ((self.doc_ids[rows] == doc[:, None]) & before).sum(1)
