"""Training FLOPs of one step, from the model's shape and the batch's real tokens.

For each slot, with N its matmul parameters (lookup tables excluded; a mixture of experts:
those one position runs through, ``SlotModule.active_params``), T the real
(unpadded) positions it processes and s the length of each sequence it attends over:

    forward        2 N T  +  4 (sum over layers of heads*head_dim) (sum s^2)
    backward       twice the forward where gradients flow (the 6N rule), split as
                   activation gradients (needed if the slot or anything upstream
                   trains) and weight gradients (of the weights that train: under
                   LoRA the adapters', not the frozen base weights')

so a fully trained transformer costs 6 N T + 12 L d sum(s^2) (attention counted in
full, not halved for causality, as in PaLM's MFU). A frozen encoder with nothing
upstream costs its forward only. Positions per slot come from the batch:
Thinker = tokens of each packed document (``doc_ids``), audio encoder = feature frames / 2
(its stride-2 conv stem), vision encoder = patches per image/video (t*h*w), Talker =
reply + codec tokens + bos per spoken reply, DiT = mel frames per reply.
"""

from __future__ import annotations

import torch
from torch import nn

from omnitrain.config.typed import RunConfig
from omnitrain.data.batch import Batch, BatchSizes
from omnitrain.slots import SLOT_SPECS, AudioEncoder, Talker
from omnitrain.training.performance.model_stats import ModelStats, model_stats
from omnitrain.training.stages.module import frozen_slots

# dense bf16/fp16 tensor-core peak per device, by name substring (vendor data sheets)
PEAK_FLOPS = {"H200": 989.4e12, "H100 PCIe": 756.0e12, "H100": 989.4e12, "A100": 312.0e12,
              "L40S": 362.1e12, "A10G": 70.0e12, "L4": 121.0e12}


def gradient_slots(cfg: RunConfig) -> set[str]:
    """Slots whose activations backward must run through: the slot trains, or a slot
    upstream of it does (autograd keeps activations only there)."""
    frozen = set(frozen_slots(cfg))
    detach = cfg.loss.talker_detach_thinker
    out = set()
    for spec in SLOT_SPECS:
        if not spec.module:
            continue
        slot = spec.name
        upstream = () if (slot == "talker" and detach) else spec.upstream
        if slot not in frozen or any(u not in frozen for u in upstream):
            out.add(slot)
    return out


def sequence_lengths(batch: Batch, talker: Talker, dit_frames_per_code: int,
                     audio_encoder: AudioEncoder | None = None) -> dict[str, list[int]]:
    """Real sequence lengths each slot processes in this batch (the Talker says its own:
    ``sequence_length``, e.g. the dual-track one also reads the prompt). From the sizes
    collate counted (``batch.sizes``) and the host fields: nothing is read off the device."""
    sizes = batch.sizes or count_sizes(batch)
    audio = (audio_encoder or AudioEncoder).layer_positions(batch.audio_lengths.cpu()).tolist()
    vision = batch.vision_grids.cpu().prod(-1).tolist()
    talker_lengths = [talker.sequence_length(p, r, c) for p, r, c in sizes.replies]
    dit = [c * dit_frames_per_code for _, _, c in sizes.replies]
    return {"thinker": sizes.documents, "audio_encoder": audio, "vision_encoder": vision,
            "talker": talker_lengths, "dit": dit}


def count_sizes(batch: Batch) -> BatchSizes:
    """``BatchSizes`` of a batch that has none (built outside collate), from its tensors."""
    documents: list[int] = []
    for row in batch.doc_ids:  # packed rows hold several documents; 0 = padding
        documents += torch.unique(row[row > 0], return_counts=True)[1].tolist()
    replies = list(zip(batch.prompt_lengths().tolist(), batch.reply_mask.sum(1).tolist(),
                       batch.codec_mask.sum(1).tolist())) if batch.speech_rows.numel() else []
    return BatchSizes(documents, replies)


class BatchFlops:
    """Model FLOPs of one training step on a batch of this run: the slot statistics and the
    DiT's mel frames per code are taken once, from the run's model (the meta one will do)."""

    def __init__(self, model: nn.Module, cfg: RunConfig) -> None:
        self.stats, self.talker, self.cfg = model_stats(model, cfg), model.talker, cfg
        self.audio_encoder = model.audio_encoder
        self.frames_per_code = int(model.dit.mel_frames_per_code)

    def __call__(self, batch: Batch) -> float:
        return step_flops(self.stats, sequence_lengths(batch, self.talker, self.frames_per_code, self.audio_encoder),
                          self.cfg)


def step_flops(stats: ModelStats, lengths: dict[str, list[int]], cfg: RunConfig) -> float:
    frozen = set(frozen_slots(cfg))
    grads = gradient_slots(cfg)
    total = 0.0
    for slot, seqs in lengths.items():
        s = stats.slots.get(slot)
        if s is None or not seqs:
            continue
        trains, flows = slot not in frozen, slot in grads
        tokens, squares = sum(seqs), sum(n * n for n in seqs)
        attn_width = sum(d for _, d in s.attention)
        # N: the weights a position runs through (a mixture of experts: its active ones)
        forward = 2.0 * s.active_matmul * tokens + 4.0 * attn_width * squares
        # only trainable weights get gradients (LoRA: the adapters, not the frozen base weights)
        weight_grads = 2.0 * s.active_trainable_matmul * tokens if trains else 0.0
        act_grads = (2.0 * s.active_matmul * tokens + 8.0 * attn_width * squares) if flows else 0.0
        total += forward + weight_grads + act_grads
    return total


def device_peak_flops(cfg: RunConfig) -> float | None:
    """Peak FLOP/s of one device: ``perf.peak_tflops`` if set, else the GPU's data sheet."""
    peak = cfg.perf.peak_tflops
    if peak:
        return float(peak) * 1e12
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)
