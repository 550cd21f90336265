"""The Thinker-Talker model assembled from one plugin per slot.

Plain PyTorch: no Lightning, no parallelism. The core knows only the slot contracts
(``omnitrain.slots``); which plugin fills each slot comes from the config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from omnitrain.config.loss_checks import declared_by_slot
from omnitrain.config.schema import LossConfig
from omnitrain.config.typed import RunConfig
from omnitrain.data.batch import Batch
from omnitrain.features.speech_mel import SpeechConfig
from omnitrain.model.flow_matching import flow_matching_loss, sample_mel
from omnitrain.model.lm_loss import target_rows_loss
from omnitrain.model.lora import apply_lora
from omnitrain.model.named_losses import add_named, declared_loss_weights, total_loss
from omnitrain.model.slot_builder import BUILD_ORDER, SlotArguments, build_slot
from omnitrain.model.speech_path import speech_condition, talker_context, talker_inputs
from omnitrain.model.thinker_io import ThinkerInputs, context_states, side_inputs
from omnitrain.nn.init import reference_init
from omnitrain.nn.precision import fp32_cpu_data
from omnitrain.registry import build, plugin_config, registry
from omnitrain.slots import (
    CodesVocoder,
    EncoderOutput,
    SpeechCondition,
    TalkerContext,
    TalkerOutput,
    ThinkerOutput,
)
from omnitrain.tokens import IGNORE_INDEX


@dataclass
class SpeechItems:
    """Per-sample speech inputs gathered from a batch (or one dummy when it has none)."""

    ctx: TalkerContext  # what the Talker reads: reply and prompt vectors, positions, speaker
    cond: SpeechCondition  # what the DiT is conditioned on besides the codes
    codes: Tensor
    code_mask: Tensor
    mel: Tensor
    real: bool


@dataclass
class StepOutputs:
    """What one forward computes; losses and evaluation metrics are read off it."""

    hidden: Tensor
    embeds: Tensor
    items: SpeechItems
    codec_in: Tensor | None = None
    codec_mask: Tensor | None = None
    codec_targets: Tensor | None = None
    talker_logits: Tensor | None = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)  # by name, from any slot


class OmniModel(nn.Module):
    def __init__(self, cfg: RunConfig) -> None:
        super().__init__()
        self.speech_cfg: SpeechConfig = cfg.speech
        self.loss_cfg: LossConfig = cfg.loss
        with fp32_cpu_data():  # not modules: their tables stay fp32 on the CPU
            self.tokenizer = build("tokenizer", cfg.tokenizer)
            self.codec = build("codec", cfg.codec)
        with reference_init():  # transformers' init for every layer the plugins build
            self._build_slots(cfg)
        apply_lora(self, cfg.lora)  # adapters on chosen slots' Linear layers (lora.slots; default none)
        # dummy encoder inputs are data, made on first use on the inputs' device: the model
        # then builds alike on the meta device, under a bf16 default dtype and under zero.Init
        self._audio_cfg, self._vision_cfg = cfg.audio_encoder, cfg.vision_encoder
        self._dummies: dict[str, tuple[Tensor, Tensor]] = {}
        special = self.tokenizer.special_ids()
        self.audio_id = special["audio"]
        self.vision_ids = (special["image"], special["video"])
        self.loss_weights = declared_loss_weights(cfg)  # of every named loss besides text/codec/flow
        self.vocoder_losses = tuple(declared_by_slot(cfg).get("vocoder", {}))
        if self.talker.context_spec().layers() and not self.thinker.takes_output_layers:
            raise ValueError(f"talker={cfg.talker.name} reads the Thinker's layer {self.talker.context_spec().layer} "
                             f"but thinker={cfg.thinker.name} gives no inner layers (Thinker.takes_output_layers)")

    def _build_slots(self, cfg: RunConfig) -> None:
        self.position = build("position", cfg.position)
        args = SlotArguments.of(cfg, self.tokenizer.vocab_size, self.codec.vocab_size, self.position,
                                code_groups=self.codec.groups)
        for slot in BUILD_ORDER:
            setattr(self, slot, build_slot(slot, cfg, args))
            if slot == "thinker":
                args.thinker_hidden_size = self.thinker.hidden_size

    # ---- dummies: every encoder runs every step (DDP/ZeRO-3 need the same graph) ----
    def _dummy(self, slot: str) -> tuple[Tensor, Tensor]:
        """0.1 s of silence or a 56x56 black image, through the slot's own data processing
        (fp32, CPU), made once."""
        if slot not in self._dummies:
            node = self._audio_cfg if slot == "audio_encoder" else self._vision_cfg
            cls, plugin_cfg = registry(slot).get(node.name).cls, plugin_config(slot, node)
            with fp32_cpu_data():
                if slot == "audio_encoder":
                    fe = cls.feature_extractor(plugin_cfg)
                    feats = fe(torch.zeros(fe.sample_rate // 10, dtype=torch.float32))
                    self._dummies[slot] = (feats[None].float(), torch.tensor([feats.shape[-1]]))
                else:
                    patches, grid = cls.processor(plugin_cfg).image(np.zeros((56, 56, 3), dtype=np.uint8))
                    self._dummies[slot] = (patches.float(), torch.tensor([grid]))
        return self._dummies[slot]

    # ---- Thinker ---------------------------------------------------------------
    def _encode(self, slot: str, inputs, device, dtype) -> tuple[EncoderOutput, Tensor]:
        """The encoder gets its data on ``device`` and its sizes (clip lengths, patch grids)
        on the host, where it plans its work without reading the GPU (``Batch.to`` keeps
        them there; ``.cpu()`` is free then). Without items, it runs on a dummy whose
        outputs enter the graph times 0 (its auxiliary losses too: every step, on every
        rank, logs the same names)."""
        encoder = getattr(self, slot)
        if inputs[0].shape[0] > 0:
            return EncoderOutput.of(encoder(inputs[0].to(device), inputs[1].cpu())), torch.zeros((), device=device)
        dummy = self._dummy(slot)
        out = EncoderOutput.of(encoder(dummy[0].to(device=device, dtype=dtype), dummy[1]))
        zero = sum((level.sum() for level in out.levels), out.tokens.sum()) * 0.0
        aux = {name: value * 0.0 for name, value in out.aux_losses.items()}
        return EncoderOutput(out.tokens[:0], [level[:0] for level in out.levels], aux), zero

    def embed_inputs(self, batch: Batch) -> ThinkerInputs:
        """Text embeddings with audio and vision placeholders replaced by encoder outputs,
        the encoders' inner levels as the Thinker's side inputs, their auxiliary losses."""
        embeds = self.thinker.embed(batch.input_ids)
        device, dtype = embeds.device, embeds.dtype
        audio, a0 = self._encode(
            "audio_encoder", (batch.audio_features.to(dtype), batch.audio_lengths), device, dtype,
        )
        vision, v0 = self._encode(
            "vision_encoder", (batch.vision_patches.to(dtype), batch.vision_grids), device, dtype,
        )
        is_audio = batch.input_ids == self.audio_id
        is_vision = (batch.input_ids == self.vision_ids[0]) | (batch.input_ids == self.vision_ids[1])
        embeds = _scatter(embeds, is_audio, audio.tokens, "audio", batch.keys)
        embeds = _scatter(embeds, is_vision, vision.tokens, "image/video", batch.keys)
        side = side_inputs(embeds, {"audio_encoder": (is_audio, audio), "vision_encoder": (is_vision, vision)},
                           self.thinker)
        return ThinkerInputs(embeds + (a0 + v0).to(dtype), side, {**audio.aux_losses, **vision.aux_losses})

    def thinker_forward(self, batch: Batch) -> tuple[ThinkerOutput, ThinkerInputs]:
        """The Thinker over the batch, with the optional inputs it declares it takes."""
        inputs = self.embed_inputs(batch)
        extra: dict = {}
        if batch.doc_runs is not None and self.thinker.takes_doc_runs:
            extra["doc_runs"] = batch.doc_runs  # documents found in the data workers: no host sync
        layers = self.talker.context_spec().layers()
        if layers:
            extra["output_layers"] = layers
        out = ThinkerOutput.of(self.thinker(inputs.embeds, batch.position_ids, batch.doc_ids, **extra,
                                            **inputs.thinker_kwargs()))
        return out, inputs

    # ---- Talker / DiT ----------------------------------------------------------
    def media_mask(self, input_ids: Tensor) -> Tensor:
        """True at audio/image/video placeholder tokens."""
        return (input_ids == self.audio_id) | (input_ids == self.vision_ids[0]) | (
            input_ids == self.vision_ids[1]
        )

    def speech_items(self, batch: Batch, thinker: ThinkerOutput, embeds: Tensor) -> SpeechItems:
        """The speech side's inputs for every spoken reply of the batch (``speech_path``),
        or one dummy item so the Talker and DiT stay in the graph when it has none."""
        hidden, spec = thinker.hidden, self.talker.context_spec()
        states = context_states(thinker, spec)
        if self.loss_cfg.talker_detach_thinker:
            states, embeds = states.detach(), embeds.detach()
        media = self.media_mask(batch.input_ids)
        n_mels = self.speech_cfg.n_mels
        if batch.speech_rows.numel() == 0:
            device = hidden.device
            reply = spec.vectors(states[:1, :1], embeds[:1, :1], media[:1, :1])
            ones = torch.ones(1, 1, dtype=torch.bool, device=device)
            ctx = TalkerContext(reply, ones, reply, ones,
                                torch.zeros(self.position.rows, 1, 1, dtype=torch.long, device=device),
                                torch.zeros(1, dtype=torch.long, device=device), prompt_media=media[:1, :1])
            codes = torch.zeros(1, 1, *([self.codec.groups] if self.codec.groups > 1 else []), dtype=torch.long,
                                device=device)
            mel = torch.zeros(1, self.dit.mel_frames_per_code, n_mels, device=device, dtype=hidden.dtype)
            return SpeechItems(ctx, SpeechCondition.none(1, n_mels, device), codes, ones, mel, False)
        cond = speech_condition(batch, n_mels, hidden.dtype)
        ctx = talker_context(batch, spec.vectors(states, embeds, media), media, cond.speaker, spec)
        return SpeechItems(ctx, cond, batch.codec_tokens, batch.codec_mask, batch.speech_mel, True)

    # ---- one forward: losses and metrics come from it ------------------------------
    def run(self, batch: Batch, talker: bool = True) -> StepOutputs:
        """The Thinker, the speech inputs and (``talker``) the teacher-forced Talker."""
        thinker, inputs = self.thinker_forward(batch)
        items = self.speech_items(batch, thinker, inputs.embeds)
        out = StepOutputs(thinker.hidden, inputs.embeds, items, aux_losses={**inputs.aux_losses})
        add_named(out.aux_losses, thinker.aux_losses, "thinker")
        if talker:
            out.codec_in, out.codec_mask, out.codec_targets = talker_inputs(self.talker, items.codes, items.code_mask)
            spoken = TalkerOutput.of(self.talker(items.ctx, out.codec_in, out.codec_mask))
            out.talker_logits = spoken.logits
            scale = 1.0 if items.real else 0.0  # a dummy reply's terms keep the graph, not the loss
            add_named(out.aux_losses, {name: scale * value for name, value in spoken.aux_losses.items()}, "talker")
        return out

    def forward(self, batch: Batch, norms: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        return self.losses(batch, self.run(batch, talker=self.loss_cfg.codec > 0), norms)

    def text_loss(self, batch: Batch, hidden: Tensor, divisor: Tensor | None = None) -> Tensor:
        """The next-token loss of ``batch``'s labelled tokens from the Thinker's ``hidden``: the
        head only at those tokens, chunk by chunk (the full logits never exist); a plain Linear
        head (``head_linear``) is fused with the cross-entropy."""
        linear = self.thinker.head_linear()
        head = linear if linear is not None else self.thinker.logits
        return target_rows_loss(head, hidden[:, :-1], next_token_targets(batch), index=batch.target_index,
                                divisor=divisor)

    def losses(self, batch: Batch, out: StepOutputs, norms: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """The weighted losses. Each per-token loss ("text", "codec"; "flow" per mel frame)
        is this batch's mean, or with ``norms`` its sum divided by ``norms[name]`` (a whole
        optimizer step's count, ``omnitrain.training.stages.step_weights``)."""
        w, items = self.loss_cfg, out.items
        norm = norms or {}
        losses = {"text": self.text_loss(batch, out.hidden, norm.get("text"))}
        scale = 1.0 if items.real else 0.0
        aux = dict(out.aux_losses)
        if out.talker_logits is not None:
            spoken = self.talker.loss(out.talker_logits, out.codec_targets, norm.get("codec"))
            add_named(losses, {name: scale * value for name, value in spoken.items()}, "talker")
        if w.flow > 0:
            dit_aux: dict[str, Tensor] = {}
            losses["flow"] = scale * flow_matching_loss(
                self.dit, items.mel, items.codes, items.code_mask, w.flow_cond_drop, items.cond,
                w.flow_ref_drop, norm.get("flow"), aux_losses=dit_aux,
            )
            add_named(aux, {name: scale * value for name, value in dit_aux.items()}, "dit")
        if isinstance(self.vocoder, CodesVocoder) and any(self.loss_weights.get(name, 0.0) > 0 for name in
                                                           self.vocoder_losses):
            own = self.vocoder.loss(items.codes, items.code_mask, items.mel)
            add_named(losses, {name: scale * value for name, value in own.items()}, "vocoder")
        # auxiliary losses are means over one forward: over ``norms["aux"]`` they weigh each
        # micro-batch of the step alike (``step_weights``)
        add_named(losses, {name: value / norm["aux"] if "aux" in norm else value
                           for name, value in aux.items()}, "an auxiliary loss")
        losses["loss"] = total_loss(losses, w, self.loss_weights)
        return losses

    # ---- evaluation and inference -------------------------------------------
    @torch.no_grad()
    def speech_eval(self, batch: Batch, out: StepOutputs, ode_steps: int = 4, ode_method: str = "euler",
                    seed: int = 0) -> dict[str, Tensor]:
        """Held-out speech quality from a forward's outputs: Talker token accuracy with
        teacher forcing (``codec_acc``) and free-running greedy (``codec_gen_acc``, position
        by position, eos included), and the L1 distance of the DiT's mel, sampled from the
        true codes with fixed noise, to the target mel (``mel_l1``)."""
        items = out.items
        if not items.real:
            return {}
        if out.talker_logits is None:
            out = self.run(batch)
        targets = out.codec_targets
        valid = targets != IGNORE_INDEX
        metrics = {"codec_acc": (out.talker_logits.argmax(-1) == targets)[valid].float().mean()}
        t = self.talker
        made = t.generate(items.ctx, out.codec_in.shape[1])
        made = F.pad(made, [0, 0] * (made.dim() - 2) + [0, out.codec_in.shape[1] - made.shape[1]], value=t.pad_id)
        made = made.masked_fill(made == t.eos_id, t.pad_id)
        want = targets.masked_fill(targets == t.eos_id, t.pad_id)
        metrics["codec_gen_acc"] = (made == want)[valid].float().mean()
        if not self.dit.makes_mel:  # a vocoder that decodes codes: no mel to compare
            return metrics
        g = torch.Generator(device=items.mel.device).manual_seed(seed)
        mel = sample_mel(self.dit, items.codes, items.code_mask, self.speech_cfg.n_mels, ode_steps,
                         ode_method, 0.0, g, items.cond)
        frames = items.code_mask.repeat_interleave(self.dit.mel_frames_per_code, dim=1)[..., None]
        metrics["mel_l1"] = ((mel - items.mel).abs() * frames).sum() / (frames.sum() * mel.shape[-1])
        return metrics

    @torch.no_grad()
    def per_sample_losses(self, batch: Batch) -> dict[str, Tensor]:
        """Mean text CE of each sample (in ``batch.keys`` order) and codec CE of each
        spoken reply (in ``speech_rows`` order): for evaluation and packing checks."""
        out = self.run(batch)
        targets = next_token_targets(batch)
        token_ce = F.cross_entropy(
            self.thinker.logits(out.hidden)[:, :-1].flatten(0, 1).float(), targets.clamp_min(0).flatten(),
            reduction="none",
        ).view_as(targets) * (targets != IGNORE_INDEX)
        docs = batch.doc_ids[:, :-1]
        # one slot per (row, document), in token order; padding (doc 0) adds nothing
        slot = batch.doc_ids.amax(1).cumsum(0) - batch.doc_ids.amax(1)
        index = (slot[:, None] + docs - 1).clamp_min(0)
        n = int(batch.doc_ids.amax(1).sum())
        total = torch.zeros(n, device=out.hidden.device).index_add_(0, index.flatten(), token_ce.flatten())
        count = torch.zeros(n, device=out.hidden.device).index_add_(
            0, index.flatten(), (targets != IGNORE_INDEX).float().flatten())
        result = {"text": total / count.clamp_min(1)}
        if out.items.real:
            valid = out.codec_targets != IGNORE_INDEX
            ce = F.cross_entropy(out.talker_logits.flatten(0, 1).float(), out.codec_targets.clamp_min(0).flatten(),
                                 reduction="none").view_as(out.codec_targets)
            result["codec"] = (ce * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp_min(1)
        return result

    @torch.no_grad()
    def speech_to_wave(self, codes: Tensor, code_mask: Tensor, steps: int = 16, method: str = "euler",
                       guidance: float = 0.0, generator: torch.Generator | None = None,
                       cond: SpeechCondition | None = None, sway: float = 0.0) -> Tensor:
        return self.decode_speech(codes, code_mask, steps, method, guidance, generator, cond, sway)[0]

    @torch.no_grad()
    def decode_speech(self, codes: Tensor, code_mask: Tensor, steps: int = 16, method: str = "euler",
                      guidance: float = 0.0, generator: torch.Generator | None = None,
                      cond: SpeechCondition | None = None, sway: float = 0.0,
                      noise: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Waveform (B, samples) and mel (B, T, n_mels) of codes (B, C): the DiT's mel through
        the vocoder, or a vocoder that decodes codes itself (``CodesVocoder``; mel (B, 0, n_mels))."""
        mel = self.mel_of_codes(codes, code_mask, steps, method, guidance, generator, cond, sway, noise)
        return self.wave_of(codes, code_mask, mel, cond), mel

    @torch.no_grad()
    def mel_of_codes(self, codes: Tensor, code_mask: Tensor, steps: int = 16, method: str = "euler",
                     guidance: float = 0.0, generator: torch.Generator | None = None,
                     cond: SpeechCondition | None = None, sway: float = 0.0,
                     noise: Tensor | None = None) -> Tensor:
        """The DiT's mel of codes (B, C * k, n_mels); (B, 0, n_mels) without a DiT (``dit=none``)."""
        if not self.dit.makes_mel:
            return torch.zeros(codes.shape[0], 0, self.speech_cfg.n_mels, device=codes.device)
        return sample_mel(self.dit, codes, code_mask, self.speech_cfg.n_mels, steps, method,
                          guidance, generator, cond, sway, noise=noise)

    @torch.no_grad()
    def wave_of(self, codes: Tensor, code_mask: Tensor, mel: Tensor, cond: SpeechCondition | None = None) -> Tensor:
        """The vocoder's waveform: from the DiT's ``mel``, or from the codes (``CodesVocoder``)."""
        if isinstance(self.vocoder, CodesVocoder):
            return self.vocoder.decode(codes, code_mask, cond)
        return self.vocoder(mel)


def next_token_targets(batch: Batch) -> Tensor:
    """Labels shifted for next-token prediction, never predicting across documents."""
    targets = batch.labels[:, 1:]
    same_doc = batch.doc_ids[:, 1:] == batch.doc_ids[:, :-1]
    return targets.masked_fill(~same_doc, IGNORE_INDEX)


def _scatter(embeds: Tensor, where: Tensor, features: Tensor, what: str, keys: list[str]) -> Tensor:
    # the count is checked without reading it back to the host: on a GPU the assert runs on
    # the device (asynchronously); on the CPU it raises here and the message says what is wrong
    try:
        torch._assert_async(where.sum() == features.shape[0],
                            f"{what} placeholder tokens and {what} encoder embeddings differ in number")
    except RuntimeError:
        n = int(where.sum())
        raise ValueError(
            f"the batch has {n} {what} placeholder tokens but the {what} encoder produced "
            f"{features.shape[0]} embeddings (samples: {keys[:8]}). The encoder's token count "
            f"and the data pipeline's disagree: check the encoder's feature extractor/processor."
        ) from None
    if features.shape[0] == 0:
        return embeds
    return embeds.masked_scatter(where[..., None], features.to(embeds.dtype))
