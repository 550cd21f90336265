"""Keep derived constants (STFT windows, filterbanks) out of checkpoints."""

from __future__ import annotations

from torch import nn


def constant_buffers(module: nn.Module) -> nn.Module:
    """Mark every buffer of ``module`` and its children non-persistent.

    torchaudio transforms register their windows and filterbanks as persistent buffers;
    they are recomputed from the config, so saving them only couples checkpoints to
    settings like ``n_fft`` (and some share storage, which safetensors refuses).
    """
    for sub in module.modules():
        sub._non_persistent_buffers_set.update(sub._buffers.keys())
    return module
