"""Peak host memory of ``omnitrain import-hf`` and ``export --format hf`` on a multi-GB
Qwen2.5-Omni-shaped checkpoint (random bf16 tensors in 3 shards, as a release stores them).

    .venv/bin/python benchmarks/import_hf_peak_rss.py [--layers 16] [--workdir /tmp/omnitrain_hf_bench]

The checkpoint is made without ever holding the model: transformers builds it on the meta
device for the names and shapes (renamed to the saved layout), then each shard's random
tensors are written and freed. Import and export each run in a fresh process and report
their peak RSS (ru_maxrss); a process that imports the same modules gives the baseline.
The issue's bound: at most the largest shard plus the largest tensor plus the interpreter.
The import upcasts one tensor at a time to fp32 (bundles hold fp32), so its fp32 copy is
also reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MiB = 2**20
SAVED = (("thinker.model.audio_tower.", "thinker.audio_tower."), ("thinker.model.visual.", "thinker.visual."),
         ("thinker.model.language_model.", "thinker.model."))


def peak_rss(code: str) -> tuple[int, str]:
    """(peak RSS bytes, stdout) of a fresh interpreter running ``code``."""
    wrapped = code + "\nimport resource\nprint('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run([sys.executable, "-c", wrapped], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return int(proc.stdout.split("MAXRSS")[-1].split()[0]) * 1024, proc.stdout


def make_checkpoint(folder: Path, layers: int) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    from tests.hf.tiny_qwen_omni import tiny_config

    cfg = tiny_config().to_dict()
    for sub in (cfg["thinker_config"]["text_config"], cfg["talker_config"]):
        sub.pop("layer_types", None)
        sub.pop("max_window_layers", None)
    cfg["thinker_config"]["text_config"].update(hidden_size=2048, intermediate_size=8192, num_hidden_layers=layers,
                                                num_attention_heads=16, num_key_value_heads=2, vocab_size=65536)
    cfg["thinker_config"]["audio_config"].update(d_model=512, encoder_layers=4, encoder_attention_heads=8,
                                                 encoder_ffn_dim=2048, output_dim=2048)
    cfg["thinker_config"]["vision_config"].update(hidden_size=512, depth=4, num_heads=8, intermediate_size=1024,
                                                  out_hidden_size=2048, fullatt_block_indexes=[3])
    cfg["thinker_config"]["text_config"]["rope_parameters"]["mrope_section"] = [16, 24, 24]
    cfg["talker_config"].update(embedding_size=2048, hidden_size=256, intermediate_size=1024, head_dim=128,
                                rope_parameters=dict(cfg["thinker_config"]["text_config"]["rope_parameters"]))
    for key in ("tts_text_start_token_id", "tts_text_end_token_id", "tts_text_pad_token_id"):
        cfg["talker_config"][key] += 60000  # inside the larger vocabulary, like the release's
    config = Qwen2_5OmniConfig(**{k: cfg[k] for k in ("thinker_config", "talker_config", "token2wav_config")})
    with torch.device("meta"):
        model = Qwen2_5OmniForConditionalGeneration(config)
    shapes = {}
    for name, t in model.state_dict().items():
        for old, new in SAVED:
            if name.startswith(old):
                name = new + name[len(old):]
        shapes[name] = tuple(t.shape)
    total = sum(torch.Size(s).numel() * 2 for s in shapes.values())
    per_shard, groups, size = total / 3, [[]], 0
    for name, shape in shapes.items():
        nbytes = torch.Size(shape).numel() * 2
        if groups[-1] and size + nbytes > per_shard * 1.02 and len(groups) < 3:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    folder.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    g = torch.Generator().manual_seed(0)
    for i, group in enumerate(groups, 1):
        file = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        save_file({n: (torch.randn(shapes[n], generator=g) * 0.02).to(torch.bfloat16) for n in group},
                  str(folder / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in group})
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    config.save_pretrained(folder)
    torch.save({"Chelsie": {"cond": torch.randn(8), "ref_mel": torch.randn(30, 80), "bos_token": 61000}},
               folder / "spk_dict.pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--workdir", default="/tmp/omnitrain_hf_bench")
    args = ap.parse_args()
    work = Path(args.workdir)
    hf = work / "release"
    if not (hf / "config.json").exists():
        make_checkpoint(hf, args.layers)
    from omnitrain.hf.formats import iter_specs, shards

    files = shards(hf)
    specs = [s for _, s, _ in iter_specs(files)]
    largest_shard = max(p.stat().st_size for p in files)
    largest_tensor = max(s.numel * 2 for s in specs)
    imports = "import omnitrain.cli, omnitrain.hf.importer, omnitrain.hf.exporter, safetensors, transformers"
    baseline, _ = peak_rss(imports)
    for name in ("bundle", "export"):
        if (work / name).exists():
            subprocess.run(["rm", "-rf", str(work / name)], check=True)
    ours, _ = peak_rss(f"{imports}\nfrom omnitrain.cli import main\nassert main(['import-hf', '{hf}', '{work / 'bundle'}']) == 0")
    back, _ = peak_rss(f"{imports}\nfrom omnitrain.cli import main\n"
                       f"assert main(['export', '{work / 'bundle'}', '{work / 'export'}', '--format', 'hf']) == 0")
    bound = largest_shard + largest_tensor + baseline
    result = {
        "checkpoint_MiB": round(sum(p.stat().st_size for p in files) / MiB), "shards": len(files),
        "tensors": len(specs), "largest_shard_MiB": round(largest_shard / MiB),
        "largest_tensor_bf16_MiB": round(largest_tensor / MiB), "largest_tensor_fp32_MiB": round(2 * largest_tensor / MiB),
        "baseline_imports_MiB": round(baseline / MiB),
        "import_peak_MiB": round(ours / MiB), "import_over_baseline_MiB": round((ours - baseline) / MiB),
        "export_peak_MiB": round(back / MiB), "export_over_baseline_MiB": round((back - baseline) / MiB),
        "bound_MiB (shard + tensor + baseline)": round(bound / MiB),
        "import_below_bound": ours < bound, "export_below_bound": back < bound,
        "bundle_model_MiB": round((work / "bundle" / "model.safetensors").stat().st_size / MiB),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
