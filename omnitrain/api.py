"""Everything a plugin needs, in one place: the slot contracts, ``register``, the layout
types, and the building blocks the built-in plugins are made of.

A plugin is a class that subclasses one slot's base and registers under a name with a
config dataclass::

    from omnitrain.api import PositionScheme, register

    @register("position", "scaled_rope", config=ScaledRopeConfig)
    class ScaledRope(PositionScheme): ...

The constructor arguments each slot receives are listed in ``omnitrain.slots``;
``omnitrain list`` shows what is registered.
"""

from omnitrain.features.speech_mel import SpeechConfig, SpeechMel
from omnitrain.features.vision import QwenPatchProcessor, QwenPixelsConfig
from omnitrain.features.whisper_mel import WhisperLogMel, audio_token_count
from omnitrain.inference.sampling import sample_next
from omnitrain.nn import (
    Attention,
    RMSNorm,
    SwiGLU,
    TransformerBlock,
    apply_rotary,
    doc_causal_mask,
    rotate_half,
    segment_mask,
    sinusoidal_embedding,
)
from omnitrain.nn.decoder import DecoderLayer
from omnitrain.nn.kv_cache import KVCache
from omnitrain.nn.precision import param_dtype
from omnitrain.nn.rotary import inverse_frequencies
from omnitrain.positions.layout import AudioSeg, ImageSeg, Segment, TextSeg, VideoSeg, layout_length
from omnitrain.positions.multimodal_rope import MultimodalRope, MultimodalRopeConfig
from omnitrain.registry import register
from omnitrain.slots import (
    AudioEncoder,
    AudioFeatureExtractor,
    Codec,
    CodesVocoder,
    ContextSpec,
    DiT,
    DiTOutput,
    EncoderOutput,
    PositionScheme,
    PretrainedCodec,
    SideInputs,
    SpeechCondition,
    Talker,
    TalkerContext,
    TalkerOutput,
    Thinker,
    ThinkerOutput,
    Tokenizer,
    TrainableCodec,
    TrainableVocoder,
    TurnTokens,
    VisionEncoder,
    VisionProcessor,
    Vocoder,
)
from omnitrain.tokens import ROLES, SPECIAL_TOKENS

__all__ = [
    "ROLES", "SPECIAL_TOKENS", "Attention", "AudioEncoder", "AudioFeatureExtractor", "AudioSeg", "Codec",
    "CodesVocoder", "ContextSpec", "DiTOutput", "EncoderOutput", "SideInputs", "TalkerOutput", "ThinkerOutput",
    "DecoderLayer", "DiT", "ImageSeg", "KVCache", "MultimodalRope", "MultimodalRopeConfig", "PositionScheme", "PretrainedCodec", "TrainableCodec",
    "QwenPatchProcessor", "QwenPixelsConfig", "RMSNorm", "Segment", "SpeechCondition", "SpeechConfig", "SpeechMel", "SwiGLU",
    "Talker", "TalkerContext", "TextSeg", "Thinker", "Tokenizer", "TrainableVocoder", "TransformerBlock", "TurnTokens",
    "VideoSeg", "VisionEncoder", "VisionProcessor", "Vocoder", "WhisperLogMel", "apply_rotary",
    "audio_token_count", "doc_causal_mask", "inverse_frequencies", "layout_length", "param_dtype",
    "register", "rotate_half", "sample_next", "segment_mask", "sinusoidal_embedding",
]
