"""Examples -> one padded ``Batch`` (one sample per row)."""

from __future__ import annotations

import torch
from torch import Tensor

from omnitrain.data.batch import Batch
from omnitrain.data.sample_builder import Example
from omnitrain.tokens import IGNORE_INDEX


def pad_stack(tensors: list[Tensor], value: float | int, dim: int = 0) -> Tensor:
    """Right-pad tensors along ``dim`` to the longest and stack them on a new axis 0."""
    longest = max(t.shape[dim] for t in tensors)
    out = []
    for t in tensors:
        pad = [0, 0] * (t.dim() - 1 - dim) + [0, longest - t.shape[dim]]
        out.append(torch.nn.functional.pad(t, pad, value=value))
    return torch.stack(out)


def collate(examples: list[Example], pad_id: int, skipped: dict[str, int] | None = None) -> Batch:
    rows = len(examples)
    input_ids = pad_stack([e.input_ids for e in examples], pad_id)
    labels = pad_stack([e.labels for e in examples], IGNORE_INDEX)
    position_ids = pad_stack([e.position_ids for e in examples], 0, dim=1).transpose(0, 1)
    doc_ids = pad_stack([torch.ones_like(e.input_ids) for e in examples], 0)

    audio = [f for e in examples for f in e.audio_features]
    if audio:
        audio_features = pad_stack(audio, 0.0, dim=1)
        audio_lengths = torch.tensor([f.shape[-1] for f in audio])
    else:
        audio_features, audio_lengths = torch.zeros(0, 1, 1), torch.zeros(0, dtype=torch.long)

    patches = [p for e in examples for p in e.vision_patches]
    grids = [g for e in examples for g in e.vision_grids]
    vision_patches = torch.cat(patches) if patches else torch.zeros(0, 1)
    vision_grids = torch.tensor(grids, dtype=torch.long).view(-1, 3)

    speech = [i for i in range(rows) if examples[i].codec_tokens is not None]
    if speech:
        reply_positions = pad_stack([examples[i].reply_positions for i in speech], 0)
        reply_mask = pad_stack([torch.ones_like(examples[i].reply_positions, dtype=torch.bool) for i in speech], False)
        codec_tokens = pad_stack([examples[i].codec_tokens for i in speech], 0)
        codec_mask = pad_stack([torch.ones_like(examples[i].codec_tokens, dtype=torch.bool) for i in speech], False)
        speech_mel = pad_stack([examples[i].speech_mel for i in speech], 0.0)
        speaker_ids = torch.tensor([examples[i].speaker for i in speech], dtype=torch.long)
        refs = [examples[i].reference_mel for i in speech]
        n_mels = speech_mel.shape[-1]
        refs = [r if r is not None else torch.zeros(0, n_mels) for r in refs]
        reference_lengths = torch.tensor([r.shape[0] for r in refs], dtype=torch.long)
        reference_mel = pad_stack([r if r.shape[0] else torch.zeros(1, n_mels) for r in refs], 0.0)
    else:
        reply_positions = torch.zeros(0, 1, dtype=torch.long)
        reply_mask = torch.zeros(0, 1, dtype=torch.bool)
        codec_tokens = torch.zeros(0, 1, dtype=torch.long)
        codec_mask = torch.zeros(0, 1, dtype=torch.bool)
        speech_mel = torch.zeros(0, 1, 1)
        speaker_ids, reference_lengths = torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        reference_mel = torch.zeros(0, 1, 1)
    return Batch(
        input_ids=input_ids,
        position_ids=position_ids,
        doc_ids=doc_ids,
        labels=labels,
        audio_features=audio_features,
        audio_lengths=audio_lengths,
        vision_patches=vision_patches,
        vision_grids=vision_grids,
        speech_rows=torch.tensor(speech, dtype=torch.long),
        reply_positions=reply_positions,
        reply_mask=reply_mask,
        codec_tokens=codec_tokens,
        codec_mask=codec_mask,
        speech_mel=speech_mel,
        keys=[e.key for e in examples],
        speaker_ids=speaker_ids,
        reference_mel=reference_mel,
        reference_lengths=reference_lengths,
        skipped=dict(skipped or {}),
    )
