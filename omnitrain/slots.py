"""The contract of each slot: what the core calls, with which arguments.

A plugin subclasses one of these and registers itself with
``@register(slot, name, config=MyConfig)``. The core only talks to these methods, so
any plugin that honours them can be swapped in by one config override.

Constructor signatures (keyword arguments the core passes after the config; the same
table as ``SLOT_SPECS`` at the end of this file, which ``register`` checks against):

===============  ==========================================================
tokenizer        ``Tokenizer(cfg)``
audio_encoder    ``AudioEncoder(cfg, out_dim=thinker_hidden_size)``
vision_encoder   ``VisionEncoder(cfg, out_dim=thinker_hidden_size)``
position         ``PositionScheme(cfg)``
thinker          ``Thinker(cfg, vocab_size=..., position=PositionScheme)``
talker           ``Talker(cfg, thinker_hidden_size=..., codec_vocab_size=...,
                 position=PositionScheme, num_speakers=...)``
codec            ``Codec(cfg)``
dit              ``DiT(cfg, codec_vocab_size=..., n_mels=..., num_speakers=...)``
vocoder          ``Vocoder(cfg, mel=SpeechMel)``
===============  ==========================================================
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import Tensor, nn

from omnitrain.nn.kv_cache import KVCache
from omnitrain.nn.masked_ce import masked_cross_entropy
from omnitrain.positions.layout import Segment, VideoSeg
from omnitrain.tokens import ROLES, SPECIAL_TOKENS


@dataclass(frozen=True)
class TurnTokens:
    """The ids around one turn's content in a tokenizer's chat template.

    ``open`` precedes the content; ``close`` follows it and, in an assistant turn, is
    trained with the reply (the model learns to stop); ``after`` follows ``close`` and is
    never trained (ChatML's newline after ``<|im_end|>``).
    """

    open: tuple[int, ...]
    close: tuple[int, ...] = ()
    after: tuple[int, ...] = ()


class Tokenizer(ABC):
    """Text <-> ids, and the chat template. Must give an id to every role in ``SPECIAL_TOKENS``.

    The template lives here, not in the data code, so a tokenizer from a released model
    (ChatML) lays turns out exactly as that model was trained; the defaults below are
    omnitrain's own template: one role token opens a turn, ``eos`` closes an assistant turn.
    """

    vocab_size: int
    #: system text put first when a conversation has none (None: no system turn is added)
    default_system: str | None = None

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: list[int]) -> str: ...

    @abstractmethod
    def special_id(self, role: str) -> int:
        """Id of the special token with this role (a key of ``SPECIAL_TOKENS``)."""

    @abstractmethod
    def save(self, directory: Path) -> list[str]:
        """Write the files an inference bundle needs; return their names."""

    def special_ids(self) -> dict[str, int]:
        """Every role's id; ``system`` may be missing (tokenizers written before it existed:
        their conversations then cannot have a system turn)."""
        ids = {}
        for role in SPECIAL_TOKENS:
            try:
                ids[role] = self.special_id(role)
            except KeyError:
                if role != "system":
                    raise
        return ids

    def turn_tokens(self, role: str) -> TurnTokens:
        """The ids that open and close a turn of ``role`` (one of ``ROLES``)."""
        if role not in ROLES:
            raise KeyError(f"no turn role {role!r}; roles: {list(ROLES)}")
        try:
            opener = self.special_id(role)
        except KeyError as exc:
            raise ValueError(f"tokenizer {type(self).__name__} has no '{role}' special token, so a "
                             f"conversation cannot have a {role} turn") from exc
        close = (self.special_id("eos"),) if role == "assistant" else ()
        return TurnTokens((opener,), close)

    def encode_turn_start(self, role: str, text: str) -> tuple[list[int], list[int]]:
        """A turn's opening followed by its first ``text``, as (opening ids, text ids). A BPE may
        merge across the boundary (ChatML's ``"user\\n"`` + a text starting with a newline);
        the merged token then counts as opening (never trained), so ids equal the template's."""
        return list(self.turn_tokens(role).open), self.encode(text)

    def generation_prompt(self) -> list[int]:
        """The ids after the prompt's last turn that ask the model for a reply."""
        return list(self.turn_tokens("assistant").open)

    def stop_id(self) -> int:
        """The id that ends a generated reply (the assistant turn's last trained id)."""
        close = self.turn_tokens("assistant").close
        return close[-1] if close else self.special_id("eos")


class AudioFeatureExtractor(ABC):
    """Runs in data workers: waveform -> encoder features. Must be picklable."""

    sample_rate: int

    @abstractmethod
    def __call__(self, wave: Tensor) -> Tensor:
        """Mono float waveform (T,) at ``sample_rate`` -> features (n_mels, frames)."""

    @abstractmethod
    def num_tokens(self, frames: int) -> int:
        """LLM tokens the encoder produces for ``frames`` feature frames."""


class SlotModule(nn.Module):
    """What every model slot's plugin has besides its forward."""

    #: takes codes with several groups per frame (a codec whose ``groups`` > 1): a Talker,
    #: DiT or codes vocoder that does not is refused for such a codec by the config check
    takes_code_groups: bool = False

    #: the repeated blocks of this plugin (``TransformerBlock``, ``DiTBlock`` ...): the units
    #: FSDP shards one by one and per-block recomputation recomputes
    block_types: tuple[type, ...] = ()
    #: keyword arguments its constructor takes beyond its slot's (``SlotSpec.kwargs``), from
    #: those any slot may get (``omnitrain.model.slot_builder.SlotArguments``)
    build_kwargs: tuple[str, ...] = ()

    def recomputes_activations(self) -> bool:
        """True when this plugin recomputes its own blocks in backward whatever the strategy
        (its own activation checkpointing): memory plans then count one block's activations."""
        return False

    def active_params(self) -> int | None:
        """Matmul parameters (lookup tables excluded) one position runs through, where that
        is fewer than all of them: a mixture of experts counts its shared weights and top-k
        of each layer's experts. FLOPs and MFU count these; memory plans count every weight.
        None: all of them (a dense model)."""
        return None

    def active_share(self, name: str) -> float | None:
        """The share of positions that run through parameter ``name`` (relative to the
        slot; a mixture of experts: top_k / experts for its expert weights and their LoRA
        adapters, 1 elsewhere), so FLOPs count the weight gradients of trainable weights
        exactly. None: not said (the trainable weights are taken as active as the whole slot)."""
        return None

    @classmethod
    def named_losses(cls, cfg: Any) -> dict[str, float]:
        """The losses this plugin returns besides the core's (``text``, ``codec``, ``flow``):
        each name with its default coefficient in the total loss (``loss.weights.<name>``
        overrides it). A Thinker's router loss, a Talker's residual code groups. Checked
        with the config, before any work: a name no plugin declares is a config error."""
        return {}


class SlotOutput:
    """A slot's forward may return its main tensor alone or one of these dataclasses (the
    tensor first, then named auxiliary losses and the like): ``of`` reads either."""

    @classmethod
    def of(cls, result: Tensor | Self) -> Self:
        return result if isinstance(result, cls) else cls(result)


@dataclass
class EncoderOutput(SlotOutput):
    """What an encoder may return instead of its tokens alone: the tokens (what replaces
    the placeholders), ``levels``, features of the same positions from inner layers (each
    like ``tokens``; Qwen3-Omni's deepstack), which reach the Thinker as ``SideInputs``, and
    named auxiliary losses (declared by ``named_losses``)."""

    tokens: Tensor
    levels: list[Tensor] = field(default_factory=list)
    aux_losses: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class SideInputs:
    """Features a Thinker adds to its hidden states after its first layers, at the media
    positions (``mask``): ``features[k]`` (mask.sum(), D) after layer k, in token order.
    Made by the core from the encoders' ``levels``; only for a Thinker that
    ``takes_side_inputs``."""

    mask: Tensor  # (B, L) bool
    features: list[Tensor]


@dataclass
class ThinkerOutput(SlotOutput):
    """What a Thinker's forward may return instead of its last hidden states alone: the
    states after each layer asked for (``output_layers``; index 0 = the input embeddings,
    i = after layer i) and named auxiliary losses (a router's load balancing), each a
    mean over this forward's tokens, declared by ``named_losses``."""

    hidden: Tensor
    layers: dict[int, Tensor] = field(default_factory=dict)
    aux_losses: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class TalkerOutput(SlotOutput):
    """What a Talker's forward may return instead of its logits alone: named auxiliary
    losses (a MoE Talker's router), declared by ``named_losses``."""

    logits: Tensor
    aux_losses: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class DiTOutput(SlotOutput):
    """What a DiT's forward may return instead of the velocity alone: named auxiliary
    losses, declared by ``named_losses``; in training they enter the total (sampling reads
    the velocity only)."""

    velocity: Tensor
    aux_losses: dict[str, Tensor] = field(default_factory=dict)


class AudioEncoder(SlotModule, ABC):
    @classmethod
    @abstractmethod
    def feature_extractor(cls, cfg: Any) -> AudioFeatureExtractor: ...

    @abstractmethod
    def forward(self, features: Tensor, lengths: Tensor) -> Tensor:
        """Padded features (N, n_mels, T) with frame counts (N,) -> tokens (sum_i n_i, out_dim)
        in item order (or an ``EncoderOutput`` with them). ``lengths`` is on the CPU (plan with it freely; move what the device
        needs): reading a GPU tensor back would stall the step."""

    @classmethod
    def layer_positions(cls, lengths: Tensor) -> Tensor:
        """Positions the encoder's layers run on for clips of ``lengths`` feature frames
        (FLOPs and memory plans). Default: after a stride-2 conv stem, as Whisper's."""
        return (lengths - 1) // 2 + 1


class VisionProcessor(ABC):
    """Runs in data workers: pixels -> flattened patches. Must be picklable."""

    merge_size: int
    video_fps: float
    min_frames: int
    max_frames: int

    @abstractmethod
    def image(self, rgb: np.ndarray) -> tuple[Tensor, tuple[int, int, int]]:
        """(H, W, 3) uint8 -> (patches (N, patch_dim), patch grid (t, h, w))."""

    @abstractmethod
    def video(self, frames: np.ndarray) -> tuple[Tensor, tuple[int, int, int]]:
        """(T, H, W, 3) uint8 frames already sampled at ``video_fps`` -> patches, grid."""

    @property
    @abstractmethod
    def temporal_patch_size(self) -> int: ...


class VisionEncoder(SlotModule, ABC):
    @classmethod
    @abstractmethod
    def processor(cls, cfg: Any) -> VisionProcessor: ...

    @abstractmethod
    def forward(self, patches: Tensor, grids: Tensor) -> Tensor:
        """Patches of all items concatenated (N, patch_dim) and their grids (items, 3) ->
        merged tokens (sum_i t*h*w/merge^2, out_dim) in item order (or an ``EncoderOutput``). ``grids`` is on the CPU,
        as ``lengths`` is for audio encoders."""


class PositionScheme(nn.Module, ABC):
    """Position ids from a layout, and the rotary cos/sin they give."""

    rows: int  # 1 for plain RoPE, 3 for (temporal, height, width)

    @abstractmethod
    def position_ids(self, layout: list[Segment]) -> Tensor:
        """(rows, L) int64 ids for one sample, starting at 0."""

    @abstractmethod
    def rotary(self, position_ids: Tensor, head_dim: int) -> tuple[Tensor, Tensor]:
        """(rows, B, L) ids -> cos, sin of shape (B, L, head_dim), float32."""

    def check_head_dim(self, head_dim: int) -> None:
        """Raise a clear error when this scheme cannot serve ``head_dim``."""
        if head_dim % 2:
            raise ValueError(f"rotary head_dim must be even, got {head_dim}")

    def video_audio_order(self, seg: VideoSeg) -> Tensor:
        """Body order of a video with its audio track: bool (video+audio,), True = audio.

        Default: the whole video body, then the whole audio body.
        """
        return torch.cat(
            [torch.zeros(seg.tokens, dtype=torch.bool), torch.ones(seg.audio_tokens, dtype=torch.bool)]
        )


class Thinker(SlotModule, ABC):
    hidden_size: int
    #: ``forward`` takes ``doc_runs=`` (``Batch.doc_runs``: the documents found in the data
    #: workers), so varlen attention needs no host sync; the core passes it only then
    takes_doc_runs: bool = False
    #: ``forward`` and ``step`` take ``side_inputs=`` (``SideInputs``: encoder levels added
    #: after the first layers); the core passes them only then, and only when an encoder
    #: returned levels
    takes_side_inputs: bool = False
    #: ``forward`` takes ``output_layers=`` (a tuple of layer indices) and returns their states
    #: in ``ThinkerOutput.layers``; the core asks only for what the Talker's context reads
    takes_output_layers: bool = False
    #: ``step`` decodes several prompts at once: it masks its attention with the cache's
    #: ``KVCache.step_mask`` (prompts padded on the left); without it the core decodes one
    #: prompt at a time
    batched_step: bool = False

    @abstractmethod
    def embed(self, input_ids: Tensor) -> Tensor: ...

    @abstractmethod
    def forward(self, inputs_embeds: Tensor, position_ids: Tensor, doc_ids: Tensor) -> Tensor | ThinkerOutput:
        """(B, L, D) embeddings, (rows, B, L) ids, (B, L) document ids (0 = padding;
        attention is causal and never crosses documents) -> final hidden (B, L, D), or a
        ``ThinkerOutput`` with them (and inner layers' states, auxiliary losses)."""

    @abstractmethod
    def logits(self, hidden: Tensor) -> Tensor: ...

    def head_linear(self) -> nn.Linear | None:
        """The vocabulary projection when it is one plain ``nn.Linear`` (``logits`` = it):
        the core then fuses it with the cross-entropy, chunk by chunk, so the full logits
        never exist. None: the core calls ``logits``."""
        return None

    @abstractmethod
    def step(self, inputs_embeds: Tensor, position_ids: Tensor, cache: KVCache) -> Tensor:
        """Incremental decoding of one prompt (a ``batched_step`` Thinker: one per row, each
        row's padding hidden by the cache's ``step_mask``): (B, n, D) new embeddings at
        (rows, B, n) position ids, attending causally to themselves and to everything in
        ``cache`` (which this call extends) -> final hidden (B, n, D), or a ``ThinkerOutput``. The
        first call, on an empty cache, is the prefill (with ``side_inputs=`` where the
        Thinker takes them); generation then costs one token's forward per token. A Thinker
        that ``takes_output_layers`` takes ``output_layers=`` here too."""


@dataclass
class TalkerContext:
    """What the Thinker hands the Talker for each spoken reply (one row per reply).

    A reply vector is the Thinker's last hidden state at a token plus that token's input
    embedding (Qwen2.5-Omni's ``hidden_states[-1] + hidden_states[0]``). The prompt is
    everything before the reply in the same sample (its media placeholders' embeddings
    zeroed, as Qwen does), LEFT-padded so every prompt ends where its reply starts.
    """

    reply: Tensor  # (S, R, D) reply tokens, the closing eos included; right-padded
    reply_mask: Tensor  # (S, R) bool
    prompt: Tensor  # (S, P, D) left-padded
    prompt_mask: Tensor  # (S, P) bool
    prompt_positions: Tensor  # (rows, S, P) the Thinker's position ids of the prompt (0 = pad)
    speaker: Tensor  # (S,) int64 index into ``speech.speakers``
    #: (S, P) bool: the prompt tokens that are media placeholders (audio, image, video), for a
    #: Talker that projects text and media apart (Qwen3-Omni); None where no one filled it
    prompt_media: Tensor | None = None


@dataclass(frozen=True)
class ContextSpec:
    """What a Talker reads from the Thinker (``Talker.context_spec``), in training,
    evaluation and generation alike (``omnitrain.model.speech_path.talker_context``).

    The default is Qwen2.5-Omni's: the last layer's states plus each token's input embedding
    (media placeholders' embeddings left out), for the reply and for everything of its sample
    before it, at the Thinker's position ids. Qwen3-Omni's Talker reads text tokens' embeddings
    and a middle layer's states at media tokens, user turns only (and the reply's own turn), at
    positions counted over what it reads: ``ContextSpec(layer=k, add_embeddings=False,
    text_as_embeddings=True, turns=("user",), positions="closed")``.
    """

    #: whose states: -1 the Thinker's output (after its final norm); k >= 0 the states
    #: after layer k (0: the input embeddings), which the Thinker must give
    #: (``takes_output_layers``)
    layer: int = -1
    #: add each token's input embedding to its states (media placeholders' left out)
    add_embeddings: bool = True
    #: text tokens (the reply's included) read their input embedding alone, media tokens the
    #: states; the Talker tells them apart by ``TalkerContext.prompt_media``
    text_as_embeddings: bool = False
    #: the roles (``omnitrain.tokens.ROLES``) of the earlier turns the prompt keeps; None:
    #: every turn. The reply's own turn (its role header) is always kept.
    turns: tuple[str, ...] | None = None
    #: "thinker": the Thinker's position ids; "closed": recounted over the kept tokens, each
    #: kept turn moved down to start one after the turns kept before it (what the position
    #: scheme gives the prompt without the left-out turns, as every turn starts with text)
    positions: str = "thinker"

    def __post_init__(self) -> None:
        if self.add_embeddings and self.text_as_embeddings:
            raise ValueError("ContextSpec: text_as_embeddings=True reads text tokens' embeddings alone, so "
                             "add_embeddings must be False")
        if self.turns is not None:
            unknown = [t for t in self.turns if t not in ROLES]
            if unknown or isinstance(self.turns, str):
                raise ValueError(f"ContextSpec.turns must be a tuple of roles from {list(ROLES)}, got {self.turns!r}")
        if self.positions not in ("thinker", "closed"):
            raise ValueError(f"ContextSpec.positions must be 'thinker' or 'closed', got {self.positions!r}")

    def layers(self) -> tuple[int, ...]:
        """The Thinker layers whose states the core must ask for."""
        return () if self.layer < 0 else (self.layer,)

    def vectors(self, states: Tensor, embeds: Tensor, media: Tensor) -> Tensor:
        """What the Talker reads at each position: (..., D) states and input embeddings,
        (...) media mask."""
        if self.text_as_embeddings:
            return torch.where(media[..., None], states, embeds.to(states.dtype))
        if self.add_embeddings:
            return states + embeds.masked_fill(media[..., None], 0.0)
        return states


class Talker(SlotModule, ABC):
    """Codec tokens from the Thinker's reply. Ids >= codec_vocab_size are its specials."""

    vocab_size: int
    bos_id: int
    eos_id: int
    pad_id: int

    def context_spec(self) -> ContextSpec:
        """What this Talker reads from the Thinker; default: Qwen2.5-Omni's view."""
        return ContextSpec()

    def sequence_length(self, prompt: int, reply: int, codes: int) -> int:
        """Positions one reply runs through the layers in training (memory plans, FLOPs):
        this default reads the reply, then [bos, codes]."""
        return reply + codes + 1

    @abstractmethod
    def forward(self, ctx: TalkerContext, codec_in: Tensor, codec_mask: Tensor) -> Tensor | TalkerOutput:
        """Teacher forcing. codec_in (S, C) = [bos, c_0, ..., c_{m-1}] -> logits
        (S, C, vocab_size) where position j predicts codec token j (and the last real
        position predicts eos); or a ``TalkerOutput`` with them and auxiliary losses. With
        several code groups (a Talker that ``takes_code_groups``): codec_in (S, C, Q), a
        frame of Q codes per position (bos and eos frames: every group that id), codec_mask
        (S, C) per frame, logits (S, C, Q, vocab_size)."""

    def loss(self, logits: Tensor, targets: Tensor, divisor: Tensor | None = None) -> dict[str, Tensor]:
        """The Talker's own losses from its teacher-forced ``logits`` and ``targets`` (S, C)
        (``IGNORE_INDEX`` where nothing is predicted): each a sum over the predicted
        positions divided by ``divisor`` (the optimizer step's count of them,
        ``omnitrain.training.stages.step_weights``; None: their number here, the mean).
        ``codec`` is weighted by ``loss.codec``; any other name must be declared by
        ``named_losses``. Default: the cross-entropy, as ``codec``."""
        return {"codec": masked_cross_entropy(logits, targets, divisor)}

    @abstractmethod
    def generate(self, ctx: TalkerContext, max_tokens: int, **sampling: Any) -> Tensor:
        """-> (S, <= max_tokens) codec ids (with code groups (S, <= max_tokens, Q) frames),
        padded with ``pad_id`` after eos. ``sampling``:
        ``sample_next``'s options plus ``min_tokens`` (no eos before that many codes)."""

    def stream(
        self, ctx: TalkerContext, replies: Iterable[Tensor], max_tokens: int, **sampling: Any
    ) -> Iterator[int | Tensor]:
        """One reply (S = 1): yield codec ids (with several code groups: each frame's (Q,)
        codes) as they are decided, while ``replies``
        yields the reply vectors (D,) as the Thinker makes them (``ctx.reply`` is unused).

        This default waits for the whole reply; a Talker that can start on the first
        reply tokens (``dual_track``) overrides it.
        """
        rows = list(replies)
        reply = torch.stack(rows)[None]
        full = replace(ctx, reply=reply,
                       reply_mask=torch.ones(reply.shape[:2], dtype=torch.bool, device=reply.device))
        for frame in self.generate(full, max_tokens, **sampling)[0]:
            if ((frame == self.eos_id) | (frame == self.pad_id)).any():
                return
            yield int(frame) if frame.dim() == 0 else frame  # one code, or a frame of several groups


class Codec(ABC):
    """Waveform <-> discrete speech tokens (runs when shards are built).

    A codec with several code groups per frame (``groups`` > 1: residual quantisers, Mimi,
    DAC, Qwen3-Omni's 16) gives codes (n, groups), each group's ids in [0, vocab_size); the
    codes then stay (S, C, groups) in batches and the Talker and the decoder must take them
    (``takes_code_groups``). With one group, codes are (n,) and (S, C), as always."""

    vocab_size: int
    sample_rate: int
    frame_rate: float  # frames per second
    groups: int = 1  # codes per frame

    @abstractmethod
    def encode(self, wave: Tensor) -> Tensor:
        """Mono waveform (T,) at ``sample_rate`` -> int64 codes (n,), or (n, groups)."""

    @abstractmethod
    def decode(self, tokens: Tensor) -> Tensor:
        """Codes (n,) or (n, groups) -> waveform (T,) at ``sample_rate``, to listen to them."""


class TrainableCodec(Codec):
    """A codec ``omnitrain train task=codec`` trains: ``network()`` is the module it
    optimises (it takes waveforms through ``frames`` and reconstructs those frames through
    its codes), ``describe()`` what ``omnitrain export`` writes to ``codec.json`` (with a
    ``plugin`` key) beside its weights, and a folder of the two is its ``path``."""

    @abstractmethod
    def network(self) -> nn.Module:
        """The trainable network: ``frames(wave (B, T))`` -> (B, n, bins), ``forward(frames)``
        -> reconstructed frames, ``cfg.frames_per_code``, ``waveform(frames, iters)``."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """codec.json: {"plugin": registered name, "config": settings without path, ...}."""


class PretrainedCodec(Codec):
    """A codec whose weights are read from a local path: its config has a ``path`` field.

    Nothing is downloaded. The config check fails before any work when ``path`` does not
    exist, and ``omnitrain export`` copies the path into the bundle (``codec/``) so a
    bundle is self-contained. Subclasses implement ``load``.
    """

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        path = Path(cfg.path)
        if not path.exists():
            raise FileNotFoundError(
                f"codec.path='{cfg.path}' does not exist: point it at the local codec checkpoint"
            )
        self.path = path
        self.load(path)

    @abstractmethod
    def load(self, path: Path) -> None:
        """Read the weights and set ``vocab_size``, ``sample_rate`` and ``frame_rate``."""


@dataclass
class SpeechCondition:
    """Who speaks: the speaker's index and a reference mel of their voice (Qwen2.5-Omni's
    speaker ``cond`` vector and ``ref_mel``). A reference of length 0 means none."""

    speaker: Tensor  # (S,) int64 index into ``speech.speakers``
    reference: Tensor  # (S, T_ref, n_mels) normalised mel frames, right-padded
    reference_lengths: Tensor  # (S,) int64

    def to(self, device: torch.device | str) -> SpeechCondition:
        return SpeechCondition(self.speaker.to(device), self.reference.to(device), self.reference_lengths.to(device))

    def first(self) -> SpeechCondition:
        """The first item's condition alone."""
        return SpeechCondition(self.speaker[:1], self.reference[:1], self.reference_lengths[:1])

    @staticmethod
    def none(n: int, n_mels: int, device: torch.device | None = None) -> SpeechCondition:
        """Speaker 0 with no reference, for ``n`` items."""
        return SpeechCondition(
            torch.zeros(n, dtype=torch.long, device=device),
            torch.zeros(n, 1, n_mels, device=device),
            torch.zeros(n, dtype=torch.long, device=device),
        )


class DiT(SlotModule, ABC):
    """Codec tokens -> mel frames, trained by conditional flow matching."""

    mel_frames_per_code: int
    #: False for a model without a DiT (``dit=none``): the vocoder then decodes codes
    #: (``CodesVocoder``), there is no flow loss, and ``mel_frames_per_code`` only cuts
    #: each reply's mel to whole codes in the data
    makes_mel: bool = True
    #: ``(block_frames, blocks_back, blocks_ahead)``: one forward's output at a frame depends
    #: only on frames of its own block and that many blocks before and after it (blocks
    #: counted from frame 0). ``None``: on the whole utterance (no chunked decoding).
    receptive_field: tuple[int, int, int] | None = None

    @abstractmethod
    def forward(
        self,
        x: Tensor,
        t: Tensor,
        codes: Tensor,
        code_mask: Tensor,
        drop_cond: Tensor,
        cond: SpeechCondition | None = None,
        offset: int = 0,
    ) -> Tensor | DiTOutput:
        """x (B, T, n_mels) at flow time t (B,) with codes (B, T / mel_frames_per_code)
        -> velocity (B, T, n_mels), or a ``DiTOutput`` with it. ``drop_cond`` (B,) bool:
        ignore codes, speaker and reference (the unconditional branch of classifier-free
        guidance). ``offset``: the utterance frame of ``x[:, 0]`` when decoding a window (a
        multiple of the block)."""


class Vocoder(SlotModule, ABC):
    """Mel frames (normalised as ``SpeechMel`` makes them) -> waveform."""

    #: mel frames of context on each side that chunked synthesis gives every chunk
    context_frames: int = 8

    @staticmethod
    def check_config(cfg: Any, speech: Any) -> list[str]:
        """Config check at compose time, before any work: what is wrong with this vocoder's
        config ``cfg`` for the run's ``speech`` section (``SpeechConfig``), one line each."""
        return []

    @abstractmethod
    def forward(self, mel: Tensor) -> Tensor:
        """(B, T, n_mels) -> (B, samples) at the speech sample rate."""


class CodesVocoder(Vocoder):
    """A decoder from codec codes straight to a waveform (Qwen3-Omni's Code2Wav), with no
    mel and no DiT: it pairs with ``dit=none``. Streaming decodes a chunk of codes with
    ``left_context_codes`` codes before it and keeps the chunk's samples, holding back the
    samples of the last ``right_context_codes`` codes until the codes after them are known,
    so a decoder whose output at a code depends on no more codes before and after it streams
    exactly what whole decoding gives."""

    #: codes before a chunk that decoding it needs to equal whole decoding
    left_context_codes: int = 8
    #: codes after a code that its samples depend on (a look-ahead: Code2Wav's transposed
    #: convolutions read the next frame)
    right_context_codes: int = 0
    build_kwargs = ("codec_vocab_size", "num_speakers")  # beside ``mel``: what codes it reads, whose voices

    @classmethod
    @abstractmethod
    def samples_per_code(cls, cfg: Any) -> int:
        """Waveform samples (at ``speech.sample_rate``) each code decodes to: with the
        codec's frame rate, the config check ties the two (codes/s x samples = samples/s)."""

    @abstractmethod
    def decode(self, codes: Tensor, code_mask: Tensor, cond: SpeechCondition | None = None) -> Tensor:
        """Codes (B, C) int64 with their mask (B, C) -> waveform (B, C * samples_per_code)."""

    @staticmethod
    def decode_rows(codes: Tensor, code_mask: Tensor, decode_one: Callable[[Tensor], Tensor],
                    samples_per_code: int) -> Tensor:
        """For a decoder that decodes one reply at a time: each row's real codes (where
        ``code_mask``) given to ``decode_one`` ((n, ...) -> samples), its samples put at those
        codes' places (cut to whole codes); masked codes give zeros. -> (B, C * samples_per_code)."""
        wave = torch.zeros(codes.shape[0], codes.shape[1] * samples_per_code, device=codes.device)
        for row, (c, m) in enumerate(zip(codes, code_mask.bool(), strict=True)):
            real = c[m]
            if real.shape[0] == 0:
                continue
            made = decode_one(real).float().reshape(-1)[: real.shape[0] * samples_per_code].to(wave.device)
            spots = m.repeat_interleave(samples_per_code).nonzero()[:, 0]  # the samples of the real codes
            wave[row, spots[: made.shape[0]]] = made
        return wave

    def loss(self, codes: Tensor, code_mask: Tensor, mel: Tensor) -> dict[str, Tensor]:
        """Its own losses in the omni task against the spoken replies' mel frames (S, C *
        mel_frames_per_code, n_mels), each declared by ``named_losses``. The core computes them
        only when one's weight is above 0; otherwise the vocoder stays frozen. Default: none."""
        return {}

    def forward(self, mel: Tensor) -> Tensor:
        raise TypeError(f"{type(self).__name__} decodes codes, not mel frames: call decode(codes, code_mask)")


class TrainableVocoder(Vocoder):
    """A vocoder with weights, trained adversarially in its own stage (``task=vocoder``).

    ``forward`` must return exactly ``T * hop_length`` samples for T frames.
    """

    @abstractmethod
    def build_discriminator(self) -> nn.Module:
        """A fresh discriminator (not part of the bundle): ``d(wave (B, samples))`` ->
        ``(scores, features)``, a list of score tensors and a list of feature-map lists,
        one entry per sub-discriminator."""


@dataclass(frozen=True)
class SlotSpec:
    """One slot: its name, the base its plugins subclass, whether it is a module of the
    model (trained, sharded, counted) or a data-side object, the keyword arguments the
    core passes after the config, and the slots whose outputs flow into it (gradients
    flow back into them)."""

    name: str
    base: type
    module: bool
    kwargs: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()


SLOT_SPECS: tuple[SlotSpec, ...] = (
    SlotSpec("tokenizer", Tokenizer, False),
    SlotSpec("audio_encoder", AudioEncoder, True, ("out_dim",)),
    SlotSpec("vision_encoder", VisionEncoder, True, ("out_dim",)),
    SlotSpec("position", PositionScheme, False),
    SlotSpec("thinker", Thinker, True, ("vocab_size", "position"), ("audio_encoder", "vision_encoder")),
    SlotSpec("talker", Talker, True, ("thinker_hidden_size", "codec_vocab_size", "position", "num_speakers"),
             ("thinker", "audio_encoder", "vision_encoder")),
    SlotSpec("codec", Codec, False),
    SlotSpec("dit", DiT, True, ("codec_vocab_size", "n_mels", "num_speakers")),
    SlotSpec("vocoder", Vocoder, True, ("mel",)),
)
SLOTS: tuple[str, ...] = tuple(spec.name for spec in SLOT_SPECS)
MODEL_SLOTS: tuple[str, ...] = tuple(spec.name for spec in SLOT_SPECS if spec.module)


def slot_spec(name: str) -> SlotSpec:
    for spec in SLOT_SPECS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown slot '{name}'. Slots: {', '.join(SLOTS)}")
