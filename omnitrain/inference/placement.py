"""Where and in what precision a bundle runs: ``--device`` and ``--dtype`` of generate and eval."""

from __future__ import annotations

import torch

from omnitrain.inference.replier import GenerateError

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_dtype(name: str | None) -> torch.dtype | None:
    """``fp32``/``bf16``/``fp16`` -> the torch dtype (None: as stored, fp32)."""
    if name is None:
        return None
    if name not in DTYPES:
        raise GenerateError(f"--dtype {name!r}: use one of {list(DTYPES)}")
    return DTYPES[name]


def parse_device(name: str | None) -> torch.device | None:
    """A torch device name, checked to exist here (None: the CPU)."""
    if name is None:
        return None
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise GenerateError(f"--device {name!r} is not a device name (e.g. cpu, cuda, cuda:1): {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise GenerateError(f"--device {name}: this machine has no CUDA GPU visible to torch; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise GenerateError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) here")
    return device
