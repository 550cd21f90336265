"""A LoRA run's merged export against its adapter forward, on any device (fp32).

    python benchmarks/lora_merge_check.py RUN_DIR [cuda|cpu]

RUN_DIR holds ``checkpoints/last.ckpt`` (any strategy's) and ``bundle/`` (``omnitrain
export``). The checkpoint is loaded into a LoRA model, the bundle into a plain one, and
both run on the first validation batch (dense attention: fp32 on CUDA has no varlen
path); prints the largest difference of the text logits, codec logits and DiT output.
"""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

sys.modules.setdefault("av", types.ModuleType("av"))  # tests.helpers imports the demo writer; nothing is written
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from lightning.fabric.utilities.apply_func import move_data_to_device  # noqa: E402
from safetensors.torch import load_model  # noqa: E402

from omnitrain.checkpoints import open_checkpoint  # noqa: E402
from omnitrain.data.pipeline import make_pipeline  # noqa: E402
from omnitrain.model.omni_model import OmniModel  # noqa: E402
from omnitrain.run_config import load_config  # noqa: E402
from tests.helpers import model_outputs  # noqa: E402


def main(run: Path, device: str) -> None:
    reader = open_checkpoint(run / "checkpoints" / "last.ckpt")
    specs = reader.tensors()
    flat = {n: torch.zeros(s.numel, dtype=s.dtype) for n, s in specs.items()}
    reader.stream(lambda n, o, p: flat[n].__setitem__(slice(o, o + p.numel()), p))
    raw = reader.config()
    raw.thinker.attention = "dense"
    cfg = load_config(raw)
    adapted = OmniModel(cfg).eval()
    adapted.load_state_dict({n: t.view(specs[n].shape) for n, t in flat.items()}, strict=True)
    merged = OmniModel(cfg.replace(lora=dataclasses.replace(cfg.lora, slots=[]))).eval()
    load_model(merged, str(run / "bundle" / "model.safetensors"), strict=True)
    batch = next(iter(make_pipeline(cfg, "val", adapted.tokenizer.special_id("pad"))))
    batch = move_data_to_device(batch, device)
    adapted.to(device), merged.to(device)
    torch.set_default_device(device)  # model_outputs makes its DiT inputs on the default device
    want, got = model_outputs(adapted, batch), model_outputs(merged, batch)
    lora_b = [n for n in flat if n.endswith(".lora.B")]
    print(f"{run.name}: {len(lora_b)} adapters, max |B| {max(flat[n].abs().max().item() for n in lora_b):.3g}, "
          + ", ".join(f"{k} max diff {(got[k] - want[k]).abs().max().item():.2e}" for k in want))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "cpu")
