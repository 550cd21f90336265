"""``codec=hf_audio`` and ``vocoder=hf_audio``: a transformers audio tokenizer you own (Mimi,
DAC, EnCodec), read from a local folder, as the codec that makes the Talker's codes, and the
same model's decoder as the vocoder of a model with no DiT (``dit=none``).

``codec.path`` is a folder written by ``save_pretrained`` (``config.json`` and the weights);
nothing is downloaded. Its ``config.json`` names the ``model_type``, which picks the family:

=========  ==============  ===================================================================
mimi       MimiModel       ``codec.num_quantizers`` (default: the model's ``num_quantizers``)
dac        DacModel        ``codec.num_quantizers`` (default: the model's ``n_codebooks``)
encodec    EncodecModel    ``codec.bandwidth`` in kbps, one of ``target_bandwidths`` (default:
                           the first, as transformers' own ``encode``)
=========  ==============  ===================================================================

Codes are (n, groups), one row a frame: transformers' ``(batch, quantizers, frames)`` codes of
one utterance transposed. ``encode`` and ``decode`` give exactly what the model's own
``encode`` / ``decode`` give (under ``torch.no_grad``, fp32, eval mode); the model is read on
first use, so composing a config or building the model only reads ``config.json``, and a
data worker gets the codec without its weights (``__getstate__``) and reads them itself.

The frame rate is exact, ``sampling_rate / hop`` with the hop the model's strides multiply
to (transformers' own ``config.frame_rate`` rounds up for DAC and EnCodec). An EnCodec that
encodes in overlapping chunks (``chunk_length_s``, the 48 kHz release) or normalises the
input (``normalize``) needs per-chunk scales to decode, which codes alone do not carry: it is
refused.

Another model with the same encode/decode shape (XCodec2, NeuCodec: whose ``encode`` also
reads mel features from their feature extractor) fits by one ``Family`` subclass added with
``add_family("xcodec2", Family)`` from a user's plugin module; nothing else changes.

The vocoder reads the same folder: ``vocoder.path`` defaults to ``${codec.path}`` (an
interpolation into the run config, so the usual ``codec.path=...`` override sets both; the
slot builder passes no paths). It has no weights of the run (the transformers model is
held outside the module tree: nothing of it is trained, checkpointed or sharded) and decodes
each reply's codes alone, so its samples equal ``codec.decode``'s, padded with zeros (or
cut) to ``samples_per_code`` a code. Streaming decodes every code before a chunk with it
(``left_context_codes``, whole decoding) and holds back the model's look-ahead
(``right_context_codes``: 0 for causal Mimi and EnCodec, a bound from DAC's convolutions).
A bundle stores ``vocoder.path`` resolved, i.e. the folder the run was trained with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from omnitrain.api import CodesVocoder, PretrainedCodec, SpeechCondition, register

WHOLE = 1 << 30  # "every code": a context no reply reaches


class Family:
    """One family of transformers audio tokenizers: how to build it, its rates and code
    groups from its config, and its encode/decode with codes as (batch, groups, frames)."""

    model_class: str  # the transformers class, e.g. "MimiModel"

    def __init__(self, config: Any) -> None:
        self.config = config  # the model's transformers config

    @property
    def codebook_size(self) -> int:
        return int(self.config.codebook_size)

    @property
    def sample_rate(self) -> int:
        return int(self.config.sampling_rate)

    @property
    def hop_length(self) -> int:
        """Samples a frame of codes stands for."""
        raise NotImplementedError

    def groups(self, cfg: Any) -> int:
        """The quantizers ``encode`` uses under the codec config ``cfg`` (checked)."""
        raise NotImplementedError

    def look_ahead(self) -> int | None:
        """Frames after a frame that its decoded samples depend on; None: not known."""
        return None

    def encode(self, model: Any, wave: Tensor, cfg: Any) -> Tensor:
        """(1, 1, T) float -> (1, groups, n) int64 under the codec config ``cfg``."""
        raise NotImplementedError

    def decode(self, model: Any, codes: Tensor) -> Tensor:
        """(1, groups, n) int64 -> (T,) float."""
        raise NotImplementedError


class Mimi(Family):
    model_class = "MimiModel"

    @property
    def hop_length(self) -> int:
        c = self.config  # the SEANet strides, then the downsampling conv (its stride: latent_stride)
        stride = c.latent_stride if c.frame_rate != c.encodec_frame_rate else 1
        return math.prod(c.upsampling_ratios) * stride

    def groups(self, cfg: Any) -> int:
        c, n = self.config, cfg.num_quantizers or self.config.num_quantizers
        if not c.num_semantic_quantizers <= n <= c.num_quantizers:
            raise ValueError(f"codec.num_quantizers={n}: this Mimi encodes with {c.num_semantic_quantizers} "
                             f"to {c.num_quantizers} quantizers")
        return n

    def look_ahead(self) -> int | None:
        return 0 if self.config.use_causal_conv else None  # causal convolutions and attention

    def encode(self, model: Any, wave: Tensor, cfg: Any) -> Tensor:
        return model.encode(wave, num_quantizers=self.groups(cfg)).audio_codes

    def decode(self, model: Any, codes: Tensor) -> Tensor:
        return model.decode(codes).audio_values[0, 0]


class Dac(Family):
    model_class = "DacModel"

    @property
    def hop_length(self) -> int:
        return math.prod(self.config.downsampling_ratios)

    def groups(self, cfg: Any) -> int:
        n = cfg.num_quantizers or self.config.n_codebooks
        if not 1 <= n <= self.config.n_codebooks:
            raise ValueError(f"codec.num_quantizers={n}: this DAC has {self.config.n_codebooks} codebooks")
        return n

    def look_ahead(self) -> int | None:
        """A bound from the decoder's convolutions, counted in frames at each stage's rate:
        the first and last convs (kernel 7) read 3 steps ahead, each block's transposed conv
        at most 2 input steps, its residual units (kernel 7, dilations 1, 3, 9) 39 steps."""
        reach, rate = 3.0, 1
        for stride in self.config.upsampling_ratios:
            reach += 2 / rate
            rate *= stride
            reach += 3 * (1 + 3 + 9) / rate
        return math.ceil(reach + 3 / rate)

    def encode(self, model: Any, wave: Tensor, cfg: Any) -> Tensor:
        return model.encode(wave, n_quantizers=self.groups(cfg)).audio_codes

    def decode(self, model: Any, codes: Tensor) -> Tensor:
        return model.decode(audio_codes=codes).audio_values[0]


class Encodec(Family):
    model_class = "EncodecModel"

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        if config.chunk_length_s is not None or config.normalize:
            raise ValueError("this EnCodec encodes in chunks (chunk_length_s) or normalises its input (normalize): "
                             "decoding needs per-chunk scales that codes alone do not carry; use an EnCodec "
                             "with chunk_length_s=None and normalize=False (e.g. the 24 kHz release)")

    @property
    def hop_length(self) -> int:
        return math.prod(self.config.upsampling_ratios)

    def bandwidth(self, cfg: Any) -> float:
        bandwidths = list(self.config.target_bandwidths)
        bw = bandwidths[0] if cfg.bandwidth is None else float(cfg.bandwidth)
        if bw not in bandwidths:
            raise ValueError(f"codec.bandwidth={bw}: this EnCodec encodes at {bandwidths} kbps")
        return bw

    def groups(self, cfg: Any) -> int:
        # transformers' EncodecResidualVectorQuantizer.get_num_quantizers_for_bandwidth
        per_quantizer = math.log2(self.codebook_size) * self.config.frame_rate
        return min(self.config.num_quantizers, max(1, math.floor(self.bandwidth(cfg) * 1000 / per_quantizer)))

    def look_ahead(self) -> int | None:
        return 0 if self.config.use_causal_conv else None

    def encode(self, model: Any, wave: Tensor, cfg: Any) -> Tensor:
        return model.encode(wave, bandwidth=self.bandwidth(cfg)).audio_codes[0]  # one chunk: (1, groups, n)

    def decode(self, model: Any, codes: Tensor) -> Tensor:
        return model.decode(codes[None], [None]).audio_values[0, 0]


FAMILIES: dict[str, type[Family]] = {"mimi": Mimi, "dac": Dac, "encodec": Encodec}


def add_family(model_type: str, family: type[Family]) -> None:
    """Teach ``hf_audio`` another ``model_type`` (from a user's plugin module)."""
    if model_type in FAMILIES:
        raise ValueError(f"hf_audio already reads model_type '{model_type}' ({FAMILIES[model_type].__name__})")
    FAMILIES[model_type] = family


def read_family(path: Path) -> Family:
    """The family of the model in ``path``, from its ``config.json`` alone (no weights)."""
    path = Path(path)
    file = path / "config.json"
    if not file.is_file():
        raise FileNotFoundError(f"'{path}' has no config.json: hf_audio reads a folder written by a transformers "
                                "audio tokenizer's save_pretrained (config.json and its weights)")
    model_type = json.loads(file.read_text()).get("model_type")
    if model_type not in FAMILIES:
        raise ValueError(f"'{file}' has model_type={model_type!r}: hf_audio reads {sorted(FAMILIES)}")
    family = FAMILIES[model_type]
    import transformers

    config_cls = getattr(transformers, family.model_class).config_class
    return family(config_cls.from_pretrained(str(path), local_files_only=True))


def load_model(path: Path, family: Family, device: torch.device | str = "cpu") -> Any:
    """The model's weights from ``path``, fp32, eval mode, on ``device``."""
    import transformers

    model_cls = getattr(transformers, family.model_class)
    model = model_cls.from_pretrained(str(path), config=family.config, dtype=torch.float32, local_files_only=True)
    return model.to(device).eval()


@dataclass
class HFAudioCodecConfig:
    path: str = ""  # a folder written by save_pretrained: config.json and the weights
    num_quantizers: int | None = None  # Mimi, DAC: code groups a frame (default: the model's own)
    bandwidth: float | None = None  # EnCodec: kbps, one of its target_bandwidths (default: the first)


@register("codec", "hf_audio", config=HFAudioCodecConfig)
class HFAudioCodec(PretrainedCodec):
    """A transformers audio tokenizer (Mimi, DAC, EnCodec) from a local folder."""

    def load(self, path: Path) -> None:
        if not str(self.cfg.path):
            raise FileNotFoundError("codec.path is not set: codec=hf_audio reads a transformers audio tokenizer's "
                                    "folder (save_pretrained); set codec.path=FOLDER")
        try:
            self.family = read_family(path)
        except (OSError, ValueError) as exc:
            raise type(exc)(f"codec.path={str(self.cfg.path)!r}: {exc}") from exc
        self.vocab_size = self.family.codebook_size
        self.sample_rate = self.family.sample_rate
        self.hop_length = self.family.hop_length
        self.frame_rate = self.sample_rate / self.hop_length
        self.groups = self.family.groups(self.cfg)
        self._model: Any = None

    @property
    def model(self) -> Any:
        if self._model is None:  # read on first use: composing and checking a config need only config.json
            self._model = load_model(self.path, self.family)
        return self._model

    @torch.no_grad()
    def encode(self, wave: Tensor) -> Tensor:
        """Mono (T,) at ``sample_rate`` -> (n, groups) int64: the model's codes, transposed."""
        wave = torch.as_tensor(wave, dtype=torch.float32).reshape(1, 1, -1)
        if wave.shape[-1] == 0:
            return torch.zeros(0, self.groups, dtype=torch.long)
        return self.family.encode(self.model, wave, self.cfg)[0].T.long().contiguous()

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        """(n, groups) (or (n,) with one group) -> the model's waveform (T,)."""
        codes = torch.as_tensor(tokens, dtype=torch.long)
        codes = codes[:, None] if codes.dim() == 1 else codes
        if codes.shape[0] == 0:
            return torch.zeros(0)
        return self.family.decode(self.model, codes.T[None].contiguous()).float()

    def __getstate__(self) -> dict:  # data workers read the weights themselves
        return {**self.__dict__, "_model": None}


@dataclass
class HFAudioVocoderConfig:
    path: str = "${oc.select:codec.path,''}"  # the codec's folder: the same model decodes its codes
    left_context_codes: int | None = None  # streaming: codes before a chunk decoded with it (None: all)
    right_context_codes: int | None = None  # codes held back (None: the model's look-ahead; all if unknown)


@register("vocoder", "hf_audio", config=HFAudioVocoderConfig)
class HFAudioVocoder(CodesVocoder):
    """The codec's own decoder (transformers' ``decode``) as the vocoder of ``dit=none``."""

    takes_code_groups = True

    def __init__(self, cfg: HFAudioVocoderConfig, mel=None, codec_vocab_size: int = 0, num_speakers: int = 1) -> None:
        super().__init__()
        self.cfg, self.path = cfg, Path(cfg.path)
        self.family = read_family(self.path)
        if codec_vocab_size and codec_vocab_size != self.family.codebook_size:
            raise ValueError(f"vocoder=hf_audio decodes codebooks of {self.family.codebook_size} ids ({self.path}) "
                             f"but the codec gives {codec_vocab_size}: point vocoder.path at the codec's folder")
        ahead = self.family.look_ahead() if cfg.right_context_codes is None else cfg.right_context_codes
        self.right_context_codes = WHOLE if ahead is None else ahead
        self.left_context_codes = WHOLE if cfg.left_context_codes is None else cfg.left_context_codes
        self._models: dict[str, Any] = {}  # by device; not submodules: no weights of the run

    @staticmethod
    def check_config(cfg: HFAudioVocoderConfig, speech: Any) -> list[str]:
        if not cfg.path:
            return ["vocoder=hf_audio decodes with the codec's own model but vocoder.path is empty: use "
                    "codec=hf_audio codec.path=FOLDER (vocoder.path follows codec.path) or set vocoder.path"]
        try:
            family = read_family(Path(cfg.path))
        except (OSError, ValueError) as exc:
            return [f"vocoder=hf_audio (vocoder.path={cfg.path!r}): {exc}"]
        if family.sample_rate != speech.sample_rate:
            return [f"vocoder=hf_audio decodes at {family.sample_rate} Hz ({cfg.path}) but speech.sample_rate="
                    f"{speech.sample_rate}: set speech.sample_rate={family.sample_rate}"]
        return []

    @classmethod
    def samples_per_code(cls, cfg: HFAudioVocoderConfig) -> int:
        return read_family(Path(cfg.path)).hop_length

    def _model(self, device: torch.device) -> Any:
        if str(device) not in self._models:
            self._models[str(device)] = load_model(self.path, self.family, device)
        return self._models[str(device)]

    @torch.no_grad()
    def decode(self, codes: Tensor, code_mask: Tensor, cond: SpeechCondition | None = None) -> Tensor:
        """Codes (B, C, groups) (or (B, C)) -> (B, C * samples_per_code): each row's real codes
        decoded alone by the model (ids clamped into the codebook), its samples padded with
        zeros or cut to whole codes; masked codes give zeros."""
        codes = codes[..., None] if codes.dim() == 2 else codes
        model = self._model(codes.device)

        def one(real: Tensor) -> Tensor:
            return self.family.decode(model, real.clamp(0, self.family.codebook_size - 1).T[None].contiguous())
        return self.decode_rows(codes, code_mask, one, self.family.hop_length)

    def __getstate__(self) -> dict:  # copies read the weights again where they decode
        return {**self.__dict__, "_models": {}}
