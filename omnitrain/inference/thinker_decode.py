"""The Thinker decoding one reply with a key/value cache: the prompt is prefilled once,
then each new token costs one token's forward (``Thinker.step``). It keeps every
position's hidden state and embedding, and gives the Talker its view through the same
``talker_context`` as training, over a ``Batch`` of the prompt and the reply so far."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from omnitrain.data.batch import Batch
from omnitrain.model.omni_model import OmniModel
from omnitrain.model.speech_path import talker_context
from omnitrain.model.thinker_io import context_states
from omnitrain.nn.kv_cache import KVCache
from omnitrain.positions.layout import Segment, TextSeg
from omnitrain.slots import ContextSpec, SpeechCondition, TalkerContext, ThinkerOutput
from omnitrain.tokens import ROLE_CODES


def cached_step(model: OmniModel, spec: ContextSpec, embeds: Tensor, positions: Tensor, cache: KVCache,
                media: Tensor, **extra) -> tuple[Tensor, Tensor]:
    """One ``Thinker.step`` over ``cache``: the final states (B, n, D) and what the Talker
    reads at those positions (``ContextSpec.vectors``; ``media`` (B, n) marks media tokens)."""
    layers = spec.layers()
    out = ThinkerOutput.of(model.thinker.step(embeds, positions, cache, **extra,
                                              **({"output_layers": layers} if layers else {})))
    return out.hidden, spec.vectors(context_states(out, spec), embeds, media)


class ThinkerDecoder:
    def __init__(self, model: OmniModel, prompt: Batch, layout: list[Segment]) -> None:
        """``prompt``: the collated prompt (one sample), ``layout`` its segments."""
        self.model, self.prompt, self.layout = model, prompt, list(layout)
        self.cache = KVCache()
        self.spec = model.talker.context_spec()  # which states the Talker reads
        inputs = model.embed_inputs(prompt)
        self.hiddens: list[Tensor] = []
        self.vectors: list[Tensor] = []  # what the Talker reads at each position (ContextSpec.vectors)
        self._step(inputs.embeds, prompt.position_ids, model.media_mask(prompt.input_ids), **inputs.thinker_kwargs())
        self.new: list[int] = []

    def _step(self, embeds: Tensor, positions: Tensor, media: Tensor, **extra) -> None:
        self.keep(*cached_step(self.model, self.spec, embeds, positions, self.cache, media, **extra))

    @property
    def prompt_length(self) -> int:
        return int(self.prompt.input_ids.shape[1])

    @property
    def last(self) -> Tensor:
        """(1, D) the final hidden state of the last position fed."""
        return self.hiddens[-1][:, -1]

    def feed(self, token: int) -> Tensor:
        """Append ``token`` (a text token after the prompt); returns its reply vector
        (as the Talker's ``ContextSpec`` says: e.g. its states + embedding), what the Talker reads for it."""
        embeds, positions = self.next_inputs(token)
        self._step(embeds, positions, torch.zeros(embeds.shape[:2], dtype=torch.bool, device=embeds.device))
        return self.vectors[-1][0, -1]

    def next_inputs(self, token: int) -> tuple[Tensor, Tensor]:
        """Count ``token`` as fed; its (1, 1, D) embedding and (rows, 1, 1) position ids."""
        self.new.append(token)
        ids = torch.tensor([[token]], device=self.prompt.input_ids.device)
        return self.model.thinker.embed(ids), self.positions()[:, :, -1:]

    def keep(self, hidden: Tensor, vectors: Tensor) -> None:
        """The (1, n, D) states and Talker vectors of the positions just run (by ``_step``, or
        by ``omnitrain.inference.batched_decode`` together with other prompts')."""
        self.hiddens.append(hidden)
        self.vectors.append(vectors)

    def positions(self) -> Tensor:
        """(rows, 1, L) the Thinker's ids of the prompt and the tokens fed, from the layout."""
        layout = self.layout + ([TextSeg(len(self.new))] if self.new else [])
        return self.model.position.position_ids(layout)[:, None].to(self.prompt.input_ids.device)

    def batch(self, cond: SpeechCondition) -> Batch:
        """The prompt and the reply so far as a one-sample ``Batch`` with one spoken reply
        (the tokens fed), spoken by ``cond``: the Talker's inputs come from it as in training."""
        p = self.prompt
        device, L = p.input_ids.device, self.prompt_length + len(self.new)
        new = torch.tensor([self.new], dtype=torch.long, device=device).reshape(1, -1)
        return dataclasses.replace(
            p, input_ids=torch.cat([p.input_ids, new], 1), doc_ids=torch.ones(1, L, dtype=torch.long, device=device),
            position_ids=self.positions(), turn_roles=self.turn_roles(), speech_rows=torch.zeros(1, dtype=torch.long, device=device),
            reply_positions=torch.arange(self.prompt_length, L, device=device)[None],
            reply_mask=torch.ones(1, len(self.new), dtype=torch.bool, device=device),
            speaker_ids=cond.speaker, reference_mel=cond.reference, reference_lengths=cond.reference_lengths,
            doc_runs=None, target_index=None, sizes=None,  # found for the prompt's grid, not this one
        )

    def turn_roles(self) -> Tensor:
        """(1, L) the prompt's turn roles, then the reply's (the assistant's)."""
        roles = self.prompt.turn_roles
        new = torch.full((1, len(self.new)), ROLE_CODES["assistant"], dtype=roles.dtype, device=roles.device)
        return torch.cat([roles, new], 1) if roles.numel() else roles

    def talker_context(self, cond: SpeechCondition) -> TalkerContext:
        """The Talker's view of the reply fed so far (none yet: the prompt alone, for streaming)."""
        batch = self.batch(cond)
        vectors = torch.cat(self.vectors, 1)
        start = torch.tensor([self.prompt_length], device=vectors.device)
        return talker_context(batch, vectors, self.model.media_mask(batch.input_ids), cond.speaker, self.spec, start)
