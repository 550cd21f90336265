"""``omnitrain import-hf HF_DIR OUT``: a Hugging Face folder -> an omnitrain bundle, streamed.

Shard by shard, tensor by tensor: each shard is memory-mapped (``safe_open``), one tensor
is read, mapped by the model family's format and written at its place in the bundle's
``model.safetensors`` (``SafetensorsStreamWriter``), then dropped. Host memory stays near
one tensor (plus its fp32 copy) above the interpreter, whatever the checkpoint's size.
Tensors the omnitrain model does not hold are kept as they are (``hf/kept.safetensors``)
so ``export --format hf`` gives them back bit for bit. A folder without some slots (a
Thinker-only checkpoint) imports what it has; the rest starts at random and is named.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from torch import nn

from omnitrain.checkpoints.base import TensorSpec, export_dtype
from omnitrain.checkpoints.safetensors_stream import SafetensorsStreamWriter
from omnitrain.config.typed import RunConfig
from omnitrain.hf.bundle_files import HF_DIR, KEPT, REFERENCE_MELS, SOURCE, write_bundle_files
from omnitrain.hf.formats import HFError, find_format, is_hf_folder, iter_specs, shards
from omnitrain.model.meta import meta_model, unique_tensors
from omnitrain.model.slot_builder import SlotArguments, build_slot
from omnitrain.nn.init import reference_init
from omnitrain.registry import build
from omnitrain.run_config import compose_config

log = logging.getLogger("omnitrain")


def _random_slots(cfg: RunConfig, slots: set[str]) -> dict[str, nn.Module]:
    """Freshly initialised modules for the slots the folder lacks, built as ``OmniModel``
    builds them (the same arguments, the reference init)."""
    meta = meta_model(cfg)
    out: dict[str, nn.Module] = {}
    torch.manual_seed(cfg.seed)
    with reference_init():
        args = SlotArguments.of(cfg, meta.tokenizer.vocab_size, meta.codec.vocab_size,
                                build("position", cfg.position), meta.thinker.hidden_size)
        for slot in sorted(slots):
            if slot in ("thinker", "position"):
                raise HFError(f"the folder has no weights for the {slot}; omnitrain cannot start it at random "
                              "and call the result an import")
            out[slot] = build_slot(slot, cfg, args)
    return out


def import_hf(folder: Path, out: Path) -> dict:
    """Write the bundle; returns a summary (tensors read, kept, left at random)."""
    folder, out = Path(folder), Path(out)
    if not is_hf_folder(folder):
        raise HFError(f"'{folder}' is not a Hugging Face model folder (config.json with a model_type and "
                      "*.safetensors); download the model first, e.g. `huggingface-cli download "
                      "Qwen/Qwen2.5-Omni-7B --local-dir DIR`")
    if out.exists() and any(out.iterdir()):
        raise HFError(f"'{out}' exists and is not empty; choose a new folder for the bundle")
    config = json.loads((folder / "config.json").read_text())
    fmt = find_format(str(config.get("model_type")))
    files = shards(folder)
    found = {key: spec for key, spec, _ in iter_specs(files)}
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _import(folder, out, config, fmt, files, found)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half bundle in the way of the next try
        raise


def _import(folder: Path, out: Path, config: dict, fmt, files: list[Path], found: dict[str, TensorSpec]) -> dict:
    (out / "tokenizer").mkdir()
    (out / HF_DIR).mkdir()
    plan = fmt.plan(folder, config, found)
    for name in plan.tokenizer_files:
        shutil.copy2(folder / name, out / "tokenizer" / name)
    for name in plan.extra_files:
        shutil.copy2(folder / name, out / HF_DIR / name)
    overrides = [o.replace("{bundle}", str(out.resolve())) for o in plan.overrides]
    cfg = compose_config(overrides)
    model = meta_model(cfg)
    specs = {n: TensorSpec(tuple(t.shape), export_dtype(t.dtype)) for n, t in unique_tensors(model).items()}
    kept_specs = {k: s for k, s in found.items() if fmt.keep(k)}
    unused: list[str] = []
    with SafetensorsStreamWriter(out / HF_DIR / KEPT, kept_specs) as kept:
        writer = SafetensorsStreamWriter(out / "model.safetensors", specs)
        try:
            from safetensors import safe_open

            for path in files:
                with safe_open(str(path), framework="pt") as f:
                    for key in f.keys():  # noqa: SIM118 (safe_open is not iterable)
                        tensor = f.get_tensor(key)
                        if key in kept_specs:
                            kept.write(key, 0, tensor.reshape(-1))
                        pieces = fmt.import_tensor(key, tensor)
                        if not pieces and key not in kept_specs:
                            unused.append(key)
                        for name, offset, piece in pieces:
                            _check_piece(specs, name, offset, piece, key)
                            writer.write(name, offset, piece.reshape(-1))
                        del tensor, pieces
            for name, offset, piece in fmt.import_extra(folder):
                if name in specs:
                    writer.write(name, offset, piece.reshape(-1))
            missing = {n for n, s in specs.items() if writer.written[n] != s.numel}
            if missing:
                slots = {n.split(".")[0] for n in missing}
                for slot, module in _random_slots(cfg, slots).items():
                    for n, t in unique_tensors(module).items():
                        full = f"{slot}.{n}"
                        if full in missing:
                            writer.write(full, 0, t.detach().reshape(-1))
            writer.close()
        except BaseException:
            writer.__exit__(RuntimeError, None, None)
            raise
    if unused:
        raise HFError(f"'{folder}': {len(unused)} tensors have no place in the omnitrain model: {unused[:5]}")
    random_slots = {slot: sum(n.split(".")[0] == slot for n in missing)
                    for slot in sorted({n.split(".")[0] for n in missing})}
    source = {"model_type": config.get("model_type"), "source": str(folder.resolve()),
              "overrides": overrides, "tensors": {k: [str(s.dtype).removeprefix("torch."), list(s.shape)] for k, s in found.items()},
              "left_random": random_slots, "notes": plan.notes}
    (out / HF_DIR / SOURCE).write_text(json.dumps(source, indent=2))
    # one override a line: `omnitrain train $(cat BUNDLE/hf/overrides.txt) init_from=BUNDLE ...`
    (out / HF_DIR / "overrides.txt").write_text("\n".join(overrides) + "\n")
    refs = fmt.reference_mels(folder)
    if refs:
        from safetensors.torch import save_file

        save_file({k: v.float().contiguous() for k, v in refs.items()}, str(out / REFERENCE_MELS))
    parameters = sum(p.numel() for p in model.parameters())
    write_bundle_files(out, cfg, str(folder.resolve()), parameters, {"hf_import": {"left_random": random_slots}})
    summary = {"bundle": str(out), "tensors": len(found), "kept": len(kept_specs), "left_random": random_slots,
               "parameters": parameters, "overrides": overrides, "notes": plan.notes}
    return summary


def _check_piece(specs: dict[str, TensorSpec], name: str, offset: int, piece: torch.Tensor, key: str) -> None:
    spec = specs.get(name)
    if spec is None:
        raise HFError(f"checkpoint tensor '{key}' maps to '{name}', which the omnitrain model does not have")
    if offset == 0 and piece.dim() == len(spec.shape) and tuple(piece.shape) != spec.shape:
        raise HFError(f"checkpoint tensor '{key}' has shape {tuple(piece.shape)}, but '{name}' is {spec.shape} "
                      "in the model its config.json describes")
