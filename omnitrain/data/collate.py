"""Examples -> one padded ``Batch``: one sample per row, or several packed per row.

Packing places samples into rows of at most ``pack_length`` tokens (first fit,
longest first). Each sample keeps its own position ids (starting at 0) and its own
document id, so attention never crosses samples. Media items and speech targets are
listed in the order their tokens appear (row by row), which is the order the model
scatters encoder outputs in.
"""

from __future__ import annotations

import torch
from torch import Tensor

from omnitrain.data.batch import Batch, BatchSizes
from omnitrain.data.sample_builder import Example
from omnitrain.nn.varlen import doc_runs
from omnitrain.tokens import IGNORE_INDEX


def pad_stack(tensors: list[Tensor], value: float | int, dim: int = 0) -> Tensor:
    """Right-pad tensors along ``dim`` to the longest and stack them on a new axis 0."""
    longest = max(t.shape[dim] for t in tensors)
    out = []
    for t in tensors:
        pad = [0, 0] * (t.dim() - 1 - dim) + [0, longest - t.shape[dim]]
        out.append(torch.nn.functional.pad(t, pad, value=value))
    return torch.stack(out)


def pack_rows(lengths: list[int], pack_length: int) -> list[list[int]]:
    """First-fit decreasing: indices of the examples in each row, in placement order.
    An example longer than ``pack_length`` gets a row of its own."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(pack_length - lengths[i])
    return rows


def collate(
    examples: list[Example],
    pad_id: int,
    skipped: dict[str, int] | None = None,
    pack_length: int | None = None,
    rows: list[list[int]] | None = None,
) -> Batch:
    """``rows`` (indices into ``examples``) fixes the packing; else ``pack_length`` packs,
    else one example per row."""
    if rows is not None:
        layout = rows
    elif pack_length:
        layout = pack_rows([len(e) for e in examples], pack_length)
    else:
        layout = [[i] for i in range(len(examples))]
    placed = [examples[i] for row in layout for i in row]  # token order, row by row
    row_ids, row_pos, row_docs, row_labels, row_roles = [], [], [], [], []
    speech_rows, reply_positions = [], []
    for r, row in enumerate(layout):
        offset = 0
        for i in row:
            e = examples[i]
            if e.codec_tokens is not None:
                speech_rows.append(r)
                reply_positions.append(e.reply_positions + offset)
            offset += len(e)
        members = [examples[i] for i in row]
        row_ids.append(torch.cat([e.input_ids for e in members]))
        row_pos.append(torch.cat([e.position_ids for e in members], dim=1))
        row_labels.append(torch.cat([e.labels for e in members]))
        row_roles.append(torch.cat([e.turn_roles if e.turn_roles is not None else  # 0: not known
                                    torch.zeros(len(e), dtype=torch.int8) for e in members]))
        row_docs.append(torch.cat([torch.full_like(e.input_ids, d) for d, e in enumerate(members, 1)]))

    audio = [f for e in placed for f in e.audio_features]
    if audio:
        audio_features = pad_stack(audio, 0.0, dim=1)
        audio_lengths = torch.tensor([f.shape[-1] for f in audio])
    else:
        audio_features, audio_lengths = torch.zeros(0, 1, 1), torch.zeros(0, dtype=torch.long)
    patches = [p for e in placed for p in e.vision_patches]
    grids = [g for e in placed for g in e.vision_grids]

    speakers = [e for e in placed if e.codec_tokens is not None]
    if speakers:
        n_mels = speakers[0].speech_mel.shape[-1]
        refs = [e.reference_mel if e.reference_mel is not None else torch.zeros(0, n_mels) for e in speakers]
        speech = dict(
            reply_positions=pad_stack(reply_positions, 0),
            reply_mask=pad_stack([torch.ones_like(p, dtype=torch.bool) for p in reply_positions], False),
            codec_tokens=pad_stack([e.codec_tokens for e in speakers], 0),
            codec_mask=pad_stack([torch.ones(len(e.codec_tokens), dtype=torch.bool) for e in speakers], False),
            speech_mel=pad_stack([e.speech_mel for e in speakers], 0.0),
            speaker_ids=torch.tensor([e.speaker for e in speakers], dtype=torch.long),
            reference_lengths=torch.tensor([r.shape[0] for r in refs], dtype=torch.long),
            reference_mel=pad_stack([r if r.shape[0] else torch.zeros(1, n_mels) for r in refs], 0.0),
        )
    else:
        speech = dict(
            reply_positions=torch.zeros(0, 1, dtype=torch.long), reply_mask=torch.zeros(0, 1, dtype=torch.bool),
            codec_tokens=torch.zeros(0, 1, dtype=torch.long), codec_mask=torch.zeros(0, 1, dtype=torch.bool),
            speech_mel=torch.zeros(0, 1, 1), speaker_ids=torch.zeros(0, dtype=torch.long),
            reference_lengths=torch.zeros(0, dtype=torch.long), reference_mel=torch.zeros(0, 1, 1),
        )
    doc_ids, labels = pad_stack(row_docs, 0), pad_stack(row_labels, IGNORE_INDEX)
    # the rows with a next-token target, as omnitrain.model.omni_model.next_token_targets
    targets = labels[:, 1:].masked_fill(doc_ids[:, 1:] != doc_ids[:, :-1], IGNORE_INDEX)
    return Batch(
        input_ids=pad_stack(row_ids, pad_id),
        position_ids=pad_stack(row_pos, 0, dim=1).transpose(0, 1),
        doc_ids=doc_ids,
        doc_runs=doc_runs(doc_ids),
        labels=labels,
        turn_roles=pad_stack(row_roles, 0),
        target_index=(targets != IGNORE_INDEX).flatten().nonzero()[:, 0],
        sizes=BatchSizes([len(e) for e in placed],
                         [(int(e.reply_positions[0]), len(e.reply_positions), len(e.codec_tokens)) for e in speakers]),
        audio_features=audio_features,
        audio_lengths=audio_lengths,
        vision_patches=torch.cat(patches) if patches else torch.zeros(0, 1),
        vision_grids=torch.tensor(grids, dtype=torch.long).view(-1, 3),
        speech_rows=torch.tensor(speech_rows, dtype=torch.long),
        keys=[e.key for e in placed],
        skipped=dict(skipped or {}),
        **speech,
    )
