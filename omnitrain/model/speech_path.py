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
from omnitrain.slots import ContextSpec, SpeechCondition, Talker, TalkerContext
from omnitrain.tokens import IGNORE_INDEX, ROLE_CODES


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


def talker_context(batch: Batch, vectors: Tensor, media: Tensor, speaker: Tensor, spec: ContextSpec,
                   starts: Tensor | None = None) -> TalkerContext:
    """The Talker's view of each spoken reply (``batch.speech_rows``): ``vectors`` (B, L, D)
    are what it reads at each position (``ContextSpec.vectors``), ``media`` (B, L) the media
    placeholders. The reply: the vectors at ``batch.reply_positions``. The prompt: the
    tokens of the same sample before the reply starts (of the turns ``spec.turns`` keeps),
    LEFT-padded so every prompt ends where its reply starts, at the Thinker's position ids
    (``spec.positions="closed"``: recounted over the kept tokens). ``starts``: where each
    reply starts, when its tokens are not known yet (streaming); default its first position.
    The prompt's width is the longest whole prompt when the data workers counted it (no
    GPU read; with turns left out that is more padding than generation's, never other tokens)."""
    rows, pos = batch.speech_rows, batch.reply_positions
    reply = vectors[rows[:, None], pos]
    start = pos[:, 0] if starts is None else starts
    L, device = vectors.shape[1], vectors.device
    doc = batch.doc_ids[rows, start.clamp(max=batch.doc_ids.shape[1] - 1)]
    before = (batch.doc_ids[rows] == doc[:, None]) & (torch.arange(L, device=device) < start[:, None])
    kept = before if spec.turns is None else before & kept_turns(batch, rows, start, spec.turns)
    n = kept.sum(1)
    if starts is None and batch.longest_prompt is not None:
        P = batch.longest_prompt  # found in the data workers: nothing read back from the GPU
    else:
        P = int(n.max()) if n.numel() else 0
    # each row's kept positions in order, at the right end (a stable sort puts them last)
    idx = torch.sort(kept.to(torch.int8), dim=1, stable=True).indices[:, L - P:]
    mask = kept.gather(1, idx)
    prompt = vectors[rows[:, None], idx] * mask[..., None]
    ids = batch.position_ids[:, rows]
    if spec.positions == "closed":
        ids = closed_positions(ids, before & ~kept)
    positions = ids.gather(2, idx[None].expand(ids.shape[0], -1, -1)) * mask
    return TalkerContext(reply, batch.reply_mask, prompt, mask, positions, speaker,
                         prompt_media=media[rows[:, None], idx] & mask)


def kept_turns(batch: Batch, rows: Tensor, start: Tensor, turns: tuple[str, ...]) -> Tensor:
    """(S, L) the tokens of turns whose role is in ``turns``, and of each reply's own turn
    (the assistant tokens right before it: its role header)."""
    roles = batch.turn_roles
    if roles.shape != batch.input_ids.shape:
        raise ValueError("the Talker reads some turns only (ContextSpec.turns), but this batch carries no turn "
                         "roles (Batch.turn_roles): build its examples with SampleBuilder and collate them")
    roles = roles[rows].long()
    keep = torch.zeros_like(roles, dtype=torch.bool)
    for role in turns:
        keep |= roles == ROLE_CODES[role]
    j = torch.arange(roles.shape[1], device=roles.device)[None]
    other = (roles != ROLE_CODES["assistant"]) & (j < start[:, None])
    last_other = torch.where(other, j, -1).amax(1, keepdim=True)  # the reply's turn starts after it
    return keep | ((j > last_other) & (j < start[:, None]))


def closed_positions(ids: Tensor, dropped: Tensor) -> Tensor:
    """(rows, S, L) position ids with the ``dropped`` (S, L) tokens' id span taken out of
    every later token's ids: a dropped run spans from its first token's id to the next
    token's (a turn starts one after the largest id before it, with text, where every row of
    the ids agrees), so the kept turns close up as if the dropped ones were never there."""
    first = ids[0]
    step = torch.zeros_like(first)
    step[:, :-1] = first[:, 1:] - first[:, :-1]  # sums to a run's span over the run
    span = torch.cumsum(step * dropped, dim=1)  # at a kept token: over the tokens before it
    return ids - span[None]


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
