"""The one path from the Thinker to the speech side, for training, evaluation and
generation alike: what the Talker reads for each spoken reply (``talker_context``), who
speaks it (``speech_condition``), and the Talker's teacher-forced inputs and targets.

Generation builds the same ``Batch`` view of its prompt and reply and calls the same
functions, so what the Talker sees at inference is what it was trained on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from omnitrain.data.batch import Batch
from omnitrain.slots import SpeechCondition, Talker, TalkerContext
from omnitrain.tokens import IGNORE_INDEX


def speech_condition(batch: Batch, n_mels: int, dtype: torch.dtype | None = None) -> SpeechCondition:
    """Speaker and reference of each spoken reply (a batch without them: speaker 0, none)."""
    S, device = batch.speech_rows.numel(), batch.speech_rows.device
    cond = SpeechCondition.none(S, n_mels, device)
    if batch.speaker_ids.numel() == S:
        cond.speaker = batch.speaker_ids.to(device)
    if batch.reference_lengths.numel() == S:
        cond.reference = batch.reference_mel.to(device, dtype or batch.reference_mel.dtype)
        cond.reference_lengths = batch.reference_lengths.to(device)
    return cond


def talker_context(batch: Batch, states: Tensor, embeds: Tensor, media: Tensor, speaker: Tensor,
                   starts: Tensor | None = None) -> TalkerContext:
    """The Talker's view of each spoken reply (``batch.speech_rows``): the reply vectors at
    ``batch.reply_positions`` (the Thinker's last hidden state + the token's embedding) and
    the prompt, everything of the same sample before the reply starts, left-padded, with
    media placeholders' embeddings zeroed (``media``, as Qwen2.5-Omni), at the Thinker's
    position ids. ``starts``: where each reply starts, when its tokens are not known yet
    (streaming); default the first reply position."""
    rows, pos = batch.speech_rows, batch.reply_positions
    reply = states[rows[:, None], pos] + embeds[rows[:, None], pos]
    start = pos[:, 0] if starts is None else starts
    L = states.shape[1]
    doc = batch.doc_ids[rows, start.clamp(max=batch.doc_ids.shape[1] - 1)]
    same = (batch.doc_ids[rows] == doc[:, None]) & (torch.arange(batch.doc_ids.shape[1], device=states.device)
                                                     < start[:, None])
    n = same.sum(1)
    if starts is None and batch.longest_prompt is not None:
        P = batch.longest_prompt  # found in the data workers: nothing read back from the GPU
    else:
        P = int(n.max()) if n.numel() else 0
    j = torch.arange(P, device=states.device)[None]
    mask = j >= (P - n)[:, None]
    idx = (start[:, None] - P + j).clamp(0, L - 1)
    flat = embeds.masked_fill(media[..., None], 0.0)
    prompt = (states[rows[:, None], idx] + flat[rows[:, None], idx]) * mask[..., None]
    positions = batch.position_ids[:, rows[:, None], idx.clamp(max=batch.position_ids.shape[-1] - 1)] * mask
    return TalkerContext(reply, batch.reply_mask, prompt, mask, positions, speaker)


def talker_inputs(talker: Talker, codes: Tensor, code_mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """[bos, c_0..c_{m-1}] inputs, their frame mask, and [c_0..c_{m-1}, eos] targets. Codes
    (S, C) or, with several code groups, (S, C, Q): bos and eos are then whole frames."""
    S = codes.shape[0]
    lengths = code_mask.sum(1)
    groups = codes.shape[2:]  # () or (Q,)
    frames = code_mask.view(*code_mask.shape, *[1] * len(groups))
    bos = torch.full((S, 1, *groups), talker.bos_id, dtype=torch.long, device=codes.device)
    codec_in = torch.cat([bos, codes.masked_fill(~frames, talker.pad_id)], 1)
    in_mask = torch.cat([torch.ones(S, 1, dtype=torch.bool, device=codes.device), code_mask], 1)
    in_frames = in_mask.view(*in_mask.shape, *[1] * len(groups))
    targets = torch.cat([codes, torch.zeros_like(bos)], 1).masked_fill(~in_frames, IGNORE_INDEX)
    targets[torch.arange(S, device=codes.device), lengths] = talker.eos_id
    return codec_in, in_mask, targets


def spoken_codes(codes: Tensor, vocab_size: int) -> Tensor:
    """A generated reply's codes without the Talker's specials (eos, pad): codes (n,), or
    frames (n, Q) of which any group holds a special dropped whole."""
    special = codes >= vocab_size
    return codes[~special.any(-1) if codes.dim() > 1 else ~special]
