"""Building blocks plugins compose: norms, rotary embeddings, attention, MLPs."""

from omnitrain.nn.attention import Attention
from omnitrain.nn.blocks import SwiGLU, TransformerBlock
from omnitrain.nn.masks import doc_causal_mask, segment_mask
from omnitrain.nn.norms import RMSNorm
from omnitrain.nn.rotary import apply_rotary, rotate_half, sinusoidal_embedding

__all__ = [
    "Attention",
    "RMSNorm",
    "SwiGLU",
    "TransformerBlock",
    "apply_rotary",
    "doc_causal_mask",
    "rotate_half",
    "segment_mask",
    "sinusoidal_embedding",
]
