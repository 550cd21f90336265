"""Activation memory of one micro-step, estimated from what the batches really hold.

Where the positions come from (the first that applies, and ``BatchShape.source`` says
which):

1. batches drawn through the real data pipeline from ``data.train_shards`` (the same
   decoding, batching and packing as training): per slot, the most positions any drawn
   batch gave it; under ``data.batching=tokens`` the Thinker's grid is the token budget
   (``rows_per_batch x pack_length``, a bound the data cannot exceed) and the other slots
   take the fullest batch's mix, scaled to fill it;
2. with no readable shards, the budget alone: every slot sees every Thinker position
   (``batch_size x max_tokens``, or the token budget), an upper bound.

How many bytes a position costs: every matrix multiply keeps its input for the weight
gradient and its output is kept by what follows (norm, activation, attention), so a
slot's layers keep about ``sum(in + out)`` elements per position over its ``Linear`` and
convolution layers, times a factor for norms, rotary and attention internals measured on
this implementation (``ELEMENTS_FACTOR``; tests check the whole estimate against a
measured step within 25%). The vocabulary projection runs only at the positions with a
text target, one chunk of rows at a time (``omnitrain.model.lm_loss``): its logits,
their log-softmax and its gradient (``LOGIT_BYTES``) for at most one chunk. Attention runs in fused
kernels (FlashAttention, memory-efficient SDPA, or CPU flash), so no L x L scores are kept.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from dataclasses import dataclass, field

from torch import nn

from omnitrain.config.typed import RunConfig
from omnitrain.data.batch import Batch
from omnitrain.model.lm_loss import CHUNK_ROWS
from omnitrain.slots import AudioEncoder

log = logging.getLogger("omnitrain")

# elements kept per (in + out) element of a matmul, by how the step computes
ELEMENTS_FACTOR = {"32": 1.2, "bf16-mixed": 1.2, "bf16": 1.2}
BYTES_PER_ELEMENT = {"32": 4.0, "bf16-mixed": 2.6, "bf16": 2.0}
# per logit: the fp32 logits (a copy of bf16 ones), their log-softmax and its gradient
LOGIT_BYTES = {"32": 12.0, "bf16-mixed": 12.0, "bf16": 12.0}


@dataclass
class BatchShape:
    """Positions one micro-batch gives each slot (the Thinker's grid includes padding)."""

    source: str
    positions: dict[str, int] = field(default_factory=dict)

    @property
    def thinker(self) -> int:
        return self.positions.get("thinker", 0)


def slot_positions(batch: Batch, talker: nn.Module | None = None, frames_per_code: int = 1,
                   audio_encoder: AudioEncoder | None = None) -> dict[str, int]:
    """Positions each slot's layers run on for ``batch`` (padding included where the slot
    pads: the Thinker's grid, the Talker's and DiT's per-reply rows), and ``lm_head``: the
    positions with a text target, where the vocabulary projection runs."""
    from omnitrain.model.omni_model import next_token_targets
    from omnitrain.tokens import IGNORE_INDEX

    out = {"thinker": int(batch.input_ids.numel()),
           "lm_head": int((next_token_targets(batch) != IGNORE_INDEX).sum())}
    positions = (audio_encoder or AudioEncoder).layer_positions(batch.audio_lengths)
    out["audio_encoder"] = int(positions.sum()) if batch.audio_lengths.numel() else 0
    out["vision_encoder"] = int(batch.vision_grids.prod(-1).sum()) if batch.vision_grids.numel() else 0
    S = int(batch.speech_rows.numel())
    if S:
        reply, codes = int(batch.reply_mask.shape[1]), int(batch.codec_mask.shape[1])
        prompt = int(batch.prompt_lengths().max())
        length = talker.sequence_length(prompt, reply, codes) if talker is not None else reply + codes + 1
        out["talker"] = S * length
        out["dit"] = S * codes * frames_per_code
    else:
        out["talker"] = out["dit"] = 0
    return out


def matmul_widths(module: nn.Module, skip_out: int | None = None) -> int:
    """sum(in + out) over the module's Linear and convolution layers (a Linear with
    ``skip_out`` outputs, the vocabulary projection counted by ``LOGIT_BYTES``, left out)."""
    total = 0
    for sub in module.modules():
        if isinstance(sub, nn.Linear) and sub.out_features == skip_out:
            continue
        if isinstance(sub, nn.Linear):
            total += sub.in_features + sub.out_features
        elif isinstance(sub, nn.modules.conv._ConvNd):
            total += sub.in_channels + sub.out_channels
    return total


def activation_bytes(model: nn.Module, shape: BatchShape, kind: str, grads: set[str],
                     recompute: bool | set[str] = False) -> float:
    """Bytes of activations one micro-step keeps at its peak, computing as ``kind``
    (``omnitrain.parallel.precision_kind``). Only slots backward runs through keep any
    (``grads``); with per-block recomputation (``recompute``: every slot, or the slots
    named), about one block's worth per slot plus each block's input."""
    per_element = ELEMENTS_FACTOR[kind] * BYTES_PER_ELEMENT[kind]
    total = 0.0
    vocab = model.tokenizer.vocab_size
    for slot, positions in shape.positions.items():
        if slot not in grads or not positions or slot == "lm_head":
            continue
        module = getattr(model, slot)
        again = recompute if isinstance(recompute, bool) else slot in recompute
        widths = _recomputed_widths(module, vocab) if again else matmul_widths(module, vocab)
        total += positions * widths * per_element
    if "thinker" in grads:  # one chunk of logits at a time (omnitrain.model.lm_loss)
        rows = min(shape.positions.get("lm_head", shape.thinker), CHUNK_ROWS)
        total += rows * vocab * LOGIT_BYTES[kind]
    return total


def _recomputed_widths(slot: nn.Module, vocab: int) -> int:
    """With each repeated block recomputed in backward: one block's activations live, and
    every block's input (its width) kept."""
    blocks = [m for m in slot.modules() if isinstance(m, nn.ModuleList) and len(m) > 1]
    if not blocks:
        return matmul_widths(slot, vocab)
    layers = max(blocks, key=len)
    one = matmul_widths(layers[0])
    inputs = sum(_input_width(b) for b in layers)
    return matmul_widths(slot, vocab) - matmul_widths(layers) + one + inputs


def _input_width(block: nn.Module) -> int:
    first = next((m for m in block.modules() if isinstance(m, nn.Linear)), None)
    return first.in_features if first is not None else 0


def batch_shape(cfg: RunConfig, model: nn.Module, draws: int = 8) -> BatchShape:
    """Positions of the largest of ``draws`` real batches, else the budget's upper bound."""
    data = cfg.data
    tokens_mode = data.batching == "tokens"
    budget = int(data.rows_per_batch) * int(data.pack_length) if tokens_mode else None
    try:
        batches = draw_batches(cfg, model, draws)
    except Exception as exc:  # no shards (yet), or unreadable: plan from the budget alone
        log.info("plan: cannot read data.train_shards (%s); planning for the upper bound", exc)
        batches = []
    frames = int(model.dit.mel_frames_per_code)
    if not batches:
        grid = budget or int(data.batch_size) * int(data.max_tokens)
        what = (f"token budget {data.rows_per_batch} x {data.pack_length}" if tokens_mode
                else f"upper bound: {data.batch_size} samples x data.max_tokens={data.max_tokens}")
        slots = ("thinker", "lm_head", "audio_encoder", "vision_encoder", "talker", "dit")
        return BatchShape(f"{what}, every slot at every position (no readable shards)",
                          {s: grid for s in slots})
    seen = [slot_positions(b, model.talker, frames, model.audio_encoder) for b in batches]
    if budget:
        # the fullest batch's mix of slots, scaled up to fill the whole budget
        fullest = max(range(len(batches)), key=lambda i: batches[i].num_tokens)
        scale = budget / max(1, batches[fullest].num_tokens)
        positions = {s: int(n * scale) for s, n in seen[fullest].items()}
        positions["thinker"] = budget
        source = (f"token budget {data.rows_per_batch} x {data.pack_length}, slots as in the fullest of "
                  f"{len(batches)} batches drawn from data.train_shards")
    else:
        positions = {s: max(p[s] for p in seen) for s in seen[0]}
        source = f"largest of {len(batches)} batches drawn from data.train_shards"
    return BatchShape(source, positions)


def draw_batches(cfg: RunConfig, model: nn.Module, n: int) -> list[Batch]:
    """The first ``n`` training batches of one process (fewer if a pass holds fewer),
    drawn in this process."""
    from omnitrain.data.pipeline import make_pipeline

    pad = model.tokenizer.special_id("pad")
    local = cfg.replace(data=dataclasses.replace(cfg.data, num_workers=0))
    return list(itertools.islice(make_pipeline(local, "train", pad, world=1, rank=0), n))
