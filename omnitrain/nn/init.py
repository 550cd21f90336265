"""The initialisation of a model built from scratch: transformers' reference init.

Qwen2.5-Omni's ``_init_weights`` (transformers ``PreTrainedModel._init_weights``) draws
linear, convolution and embedding weights from N(0, initializer_range = 0.02), zeroes
their biases (and an embedding's padding row) and sets norms to weight 1, bias 0.
PyTorch's own defaults differ in ways that matter at scale: ``nn.Embedding`` draws
N(0, 1), so a 151,936-word table tied into the LM head starts the loss near 191 instead
of ln(vocab) = 11.9.

``reference_init`` applies it *while the model is constructed*: the ``reset_parameters``
of torch's layer classes is swapped for the reference one, so every layer a plugin
builds starts from it with no second pass. That keeps construction cheap and exact
under every context: on the meta device nothing is drawn, under DeepSpeed's ``zero.Init``
each layer is initialised whole before it is partitioned. What a plugin's ``__init__``
does *after* building a layer (AdaLN-zero gates, Snake's log-scale zeros) is kept: that is
where a plugin writes its special cases. Loading weights (``init_from``, a bundle, a
checkpoint) overwrites all of it; nothing re-initialises after a load.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

INITIALIZER_RANGE = 0.02  # transformers' Qwen2.5-Omni configs, every sub-model

_WEIGHTED = (nn.Linear, nn.modules.conv._ConvNd)  # every Conv/ConvTranspose
_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)


def _weighted_reset(self: nn.Module) -> None:
    nn.init.normal_(self.weight, mean=0.0, std=INITIALIZER_RANGE)
    if self.bias is not None:
        nn.init.zeros_(self.bias)


def _embedding_reset(self: nn.Embedding) -> None:
    nn.init.normal_(self.weight, mean=0.0, std=INITIALIZER_RANGE)
    if self.padding_idx is not None:
        with torch.no_grad():
            self.weight[self.padding_idx].zero_()


def _norm_reset(self: nn.Module) -> None:
    if getattr(self, "weight", None) is not None:
        nn.init.ones_(self.weight)
    if getattr(self, "bias", None) is not None:
        nn.init.zeros_(self.bias)


@contextmanager
def reference_init() -> Iterator[None]:
    """Layers constructed inside start from the reference init (see the module docstring)."""
    resets = {cls: _weighted_reset for cls in _WEIGHTED}
    resets[nn.Embedding] = _embedding_reset
    resets.update({cls: _norm_reset for cls in _NORMS})
    originals = {cls: cls.__dict__.get("reset_parameters") for cls in resets}
    try:
        for cls, fn in resets.items():
            cls.reset_parameters = fn
        yield
    finally:
        for cls, fn in originals.items():
            if fn is None:
                del cls.reset_parameters
            else:
                cls.reset_parameters = fn
