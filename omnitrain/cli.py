"""``omnitrain`` command line: train, plan, data, export, generate, list, config."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import faulthandler
import json
import logging
import signal
import sys
import time
from pathlib import Path


class UsageError(ValueError):
    pass


def _user_errors() -> tuple[type[BaseException], ...]:
    from omnitrain.bundle import BundleError
    from omnitrain.checkpoints import CheckpointError
    from omnitrain.config.validate import ConfigError
    from omnitrain.data.build.encode import EncodeError
    from omnitrain.data.build.pack import PackError
    from omnitrain.data.media import MediaError
    from omnitrain.data.sample_builder import SampleError
    from omnitrain.data.shards import ShardError
    from omnitrain.evaluation.errors import EvalError
    from omnitrain.hf.formats import HFError
    from omnitrain.inference.generate import GenerateError
    from omnitrain.plugin_loading import PluginLoadError
    from omnitrain.registry import RegistryError

    return (ConfigError, RegistryError, ShardError, PluginLoadError, BundleError, MediaError,
            SampleError, FileNotFoundError, UsageError, PackError, GenerateError, CheckpointError, HFError, EvalError,
            EncodeError)


# ---- commands ------------------------------------------------------------------
def cmd_gpu_check(args: argparse.Namespace) -> int:
    from omnitrain.gpu_check import gpu_check

    return gpu_check(Path(args.out), Path(args.data), args.parallel, args.timeout, args.only, args.accelerator,
                     args.override)


def cmd_list(args: argparse.Namespace) -> int:
    from omnitrain.plugin_loading import load_plugins
    from omnitrain.registry import SLOTS, registry

    load_plugins(args.plugins or [])
    for slot in SLOTS:
        print(f"{slot}:")
        for entry in registry(slot).entries():
            print(f"  {entry.name:<14} {entry.description}  [{entry.origin}]")
    from omnitrain.evaluation.scorer_lookup import load_builtin_scorers
    from omnitrain.evaluation.scorers import ASR, SPEAKER

    load_builtin_scorers()
    for title, scorers in (("eval --asr, eval.asr", ASR), ("eval --speaker, eval.speaker", SPEAKER)):
        print(f"{title}:")
        for name, factory in scorers.items():
            doc = (factory.__doc__ or "").strip().splitlines()
            print(f"  {name:<14} {doc[0] if doc else ''}")
    from omnitrain.evaluation.reply_metrics import REPLY_METRICS

    print("eval.metrics (at validation):")
    for name, needs in REPLY_METRICS.items():
        print(f"  {name:<14} {'needs eval.' + needs if needs else ''}".rstrip())
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from omnitrain.run_config import compose_config

    print(OmegaConf.to_yaml(OmegaConf.create(compose_config(args.overrides).to_dict())))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from omnitrain.run_config import compose_config

    if args.multirun is not None:  # -m anywhere among the overrides: what follows it is overrides too
        from omnitrain.sweep import run_sweep

        return run_sweep([*args.overrides, *args.multirun])
    cfg = compose_config(args.overrides)  # every config error surfaces here, before any work
    from omnitrain.training.run import teardown_distributed, train

    # the process group lives until the interpreter exits: a second run in this process
    # (a notebook, the tests) reuses it, and DeepSpeed's cached groups stay valid
    atexit.register(teardown_distributed)
    from omnitrain.training.callbacks.nonfinite import NonFiniteStop
    from omnitrain.training.callbacks.preemption import Preempted

    try:
        trainer, _ = train(cfg)
    except Preempted as stop:
        print(f"\nomnitrain: {stop}", file=sys.stderr)
        return stop.exit_code
    except NonFiniteStop as stop:
        print(f"\nerror: {stop}", file=sys.stderr)
        return 3
    if trainer.is_global_zero:
        run_dir = Path(cfg.run_dir)
        last = run_dir / "checkpoints" / "last.ckpt"
        print(f"\ncheckpoints: {run_dir / 'checkpoints'}")
        if last.exists():  # not when no step was saved (max_steps=0, checkpointing off)
            print(f"next: omnitrain export {last} {run_dir / 'bundle'}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from omnitrain.parallel.global_batch import resolve_batch_size
    from omnitrain.run_config import compose_config
    from omnitrain.training.performance.plan import (
        GiB,
        deepspeed_zero3_estimate,
        format_plan,
        layout,
        make_plan,
    )

    cfg = compose_config(list(args.overrides))
    per_node, nodes = layout(cfg, args.gpus, args.nodes)
    gpus = per_node * nodes
    cfg = resolve_batch_size(cfg, gpus)
    plan = make_plan(cfg, gpus, per_node)
    memory = args.gpu_memory or float(cfg.plan.gpu_memory_gib)
    text, warnings = format_plan(plan, cfg, memory * GiB)
    print(text)
    reference = deepspeed_zero3_estimate(plan.stats, per_node, nodes)
    print(f"  (DeepSpeed's own ZeRO-3 estimate for these counts: {reference / GiB:.1f} GiB per GPU "
          "for model states)")
    for line in warnings:
        print(line, file=sys.stderr)
    return 1 if warnings else 0


def cmd_data_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from omnitrain.data.build.demo import DemoSizes, make_demo
    from omnitrain.registry import build
    from omnitrain.run_config import compose_config

    cfg = compose_config(_codec_overrides(args))
    codec = build("codec", cfg.codec)
    given = {k: v for k, v in (("train", args.train), ("val", args.val), ("per_shard", args.per_shard)) if v is not None}
    if args.profile == "long":  # benchmark-sized samples (omnitrain/data/build/demo_long.py)
        from omnitrain.data.build.demo_long import LongSizes, make_long_demo

        sizes, write = LongSizes(**given), make_long_demo
    elif args.profile == "spoken":  # real words in several voices (omnitrain/data/build/demo_spoken.py)
        from omnitrain.data.build.demo_spoken import SpokenSizes, make_spoken_demo

        held = {} if args.heldout is None else {"heldout": args.heldout}
        sizes, write = SpokenSizes(**held, **given), make_spoken_demo
    else:
        sizes, write = DemoSizes(heldout=8 if args.heldout is None else args.heldout, **given), make_demo
    t0 = time.perf_counter()
    with tqdm(total=sizes.train + sizes.val, desc="demo samples", unit="sample") as bar:
        result = write(Path(args.out), codec, sizes, seed=args.seed, progress=bar.update, measure=_length_meter(cfg))
    n = sum(s["samples"] for s in result["shards"])
    held = result["heldout"] or "none (the long profile is a benchmark workload)"
    print(f"wrote {n} samples in {len(result['shards'])} shards to {args.out} "
          f"({time.perf_counter() - t0:.1f}s); held-out prompts: {held}")
    return 0


def cmd_data_resynth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from omnitrain.data.build.resynth import resynthesise
    from omnitrain.evaluation.items import read_audio
    from omnitrain.registry import build
    from omnitrain.run_config import compose_config

    cfg = compose_config(_codec_overrides(args))
    codec = build("codec", cfg.codec)
    items = read_audio(Path(args.manifest))
    with tqdm(total=len(items), desc=f"resynthesis by codec={cfg.codec.name}", unit="recording") as bar:
        out = resynthesise(items, Path(args.out), codec, bar.update)
    print(f"copy-synthesis: {out} (score it: omnitrain eval --audio {out} --asr pocketsphinx ...)")
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from omnitrain.data.build.convert import convert

    result = convert(args.source_format, Path(args.file), Path(args.out), video_audio=args.video_audio)
    print(f"converted {result.converted} conversation(s) to {args.out}; next: omnitrain data pack {args.out} DIR")
    if result.skipped:
        print(f"skipped {len(result.skipped)} record(s), listed in {args.out}.skipped.jsonl:")
        for s in result.skipped[:5]:
            print(f"  record {s['record']}: {s['reason']}")
    return 0


def cmd_data_pack(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from omnitrain.data.build.pack import Packer, PackOptions
    from omnitrain.registry import build
    from omnitrain.run_config import compose_config

    cfg = compose_config(_codec_overrides(args))
    if args.root and not Path(args.root).is_dir():
        raise UsageError(f"--root {args.root}: not a folder")
    options = PackOptions(shard_bytes=_parse_size(args.shard_size), prefix=args.prefix, verify=not args.no_verify,
                          root=str(Path(args.root).resolve()) if args.root else None)
    measure = None if args.no_lengths else _length_meter(cfg)
    packer = Packer(Path(args.manifest), Path(args.out), build("codec", cfg.codec), options, measure)
    with tqdm(total=packer.line_count(), desc=f"packing {args.manifest}", unit="line") as bar:
        result = packer.run(progress=bar.update)
    shards, skipped = result["shards"], result["skipped"]
    samples = sum(s["samples"] for s in shards)
    resumed = f", resumed after line {result['resumed_from_line']}" if result["resumed_from_line"] else ""
    print(f"{samples} samples in {len(shards)} shards under {args.out}{resumed}")
    if skipped:
        print(f"skipped {len(skipped)} line(s), listed in {packer.skipped_path}:")
        for s in skipped[:5]:
            print(f"  line {s['line']}: {s['reason']}")
    return 0


def cmd_data_encode(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from omnitrain.config.validate import ConfigError
    from omnitrain.data.build.encode import Encoder, check_out, input_shards
    from omnitrain.registry import build
    from omnitrain.run_config import compose_config

    shards = input_shards(args.shards)  # before the config: a wrong IN or OUT fails fast
    check_out(shards, Path(args.out), args.overwrite)
    try:
        cfg = compose_config(_codec_overrides(args))
    except ConfigError as exc:  # e.g. a codec of code groups with the default talker
        raise ConfigError(f"{exc}\n(data encode checks the codec in a whole run config: give the recipe and "
                          "overrides you will train with, e.g. recipe=qwen3_omni_smoke)") from exc
    encoder = Encoder(shards, Path(args.out), build("codec", cfg.codec), overwrite=args.overwrite,
                      measure=None if args.no_lengths else _length_meter(cfg), codec_config=cfg.codec.to_dict())
    t0 = time.perf_counter()
    with tqdm(total=encoder.total(), desc=f"encoding with codec={cfg.codec.name}", unit="sample") as bar:
        result = encoder.run(progress=bar.update)
    held = f"; held-out prompts copied to {result.heldout}" if result.heldout else ""
    print(f"wrote {result.written} samples in {len(result.shards)} shards to {args.out} with codec={cfg.codec.name}, "
          f"{Encoder.summary(result)} ({time.perf_counter() - t0:.1f}s){held}")
    if result.skipped:
        print(f"skipped, listed in {result.skipped_path}:")
        for s in result.skipped[:5]:
            print(f"  {s['shard']} {s['key'] or '(rest of the shard)'}: {s['reason']}")
    return 0


def _codec_overrides(args: argparse.Namespace) -> list[str]:
    """``--codec SPEC`` as overrides (``omnitrain.data.build.codec_spec``), before the command's
    own, so ``codec.*`` given after it still applies."""
    if not getattr(args, "codec", None):
        return list(args.overrides)
    from omnitrain.data.build.codec_spec import codec_overrides

    return [*codec_overrides(args.codec, args.overrides), *args.overrides]


def _length_meter(cfg):
    """Records each sample's Thinker tokens in index.json (token batching plans epochs
    from them), for the tokenizer and encoders of ``cfg``."""
    from omnitrain.data.sample_lengths import LengthMeter

    return LengthMeter(cfg)


def _parse_size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}
    number = text.rstrip("KMGBkmgb")
    unit = text[len(number):].upper()
    if unit not in units or not number:
        raise UsageError(f"--shard-size '{text}': use a number with an optional K/M/G suffix, e.g. 256MB")
    return int(float(number) * units[unit])


def cmd_export(args: argparse.Namespace) -> int:
    from omnitrain.bundle import export_bundle

    if getattr(args, "adapter_only", False):  # a LoRA run's adapters alone (omnitrain.model.lora)
        from omnitrain.model.lora import export_adapter

        print(f"adapter: {export_adapter(Path(args.checkpoint), Path(args.out))}")
        return 0
    if getattr(args, "format", "bundle") == "hf":  # transformers' layout (omnitrain.hf.exporter)
        from omnitrain.hf.commands import export_hf_command

        return export_hf_command(Path(args.checkpoint), Path(args.out))
    out = export_bundle(Path(args.checkpoint), Path(args.out))
    if (out / "codec.json").is_file() and not (out / "manifest.json").is_file():  # a task=codec run
        print(f"codec: {out} (use it with --codec {out}, or codec={json.loads((out / 'codec.json').read_text())['plugin']}"
              f" codec.path={out})")
        return 0
    manifest = json.loads((out / "manifest.json").read_text())
    print(f"bundle: {out} ({manifest['parameters']:,} parameters)")
    return 0


def cmd_import_hf(args: argparse.Namespace) -> int:
    from omnitrain.hf.commands import import_hf_command

    return import_hf_command(Path(args.hf_dir), Path(args.out))


def cmd_generate(args: argparse.Namespace) -> int:
    from omnitrain.inference.generate import Generator
    from omnitrain.inference.placement import parse_device, parse_dtype

    if (args.text is None) == (args.manifest is None):
        raise UsageError("give either --text (one prompt) or --manifest (a JSONL of prompts)")
    gen = Generator(Path(args.bundle), trust_plugins=args.trust_plugins, device=parse_device(args.device),
                    dtype=parse_dtype(args.dtype))
    if args.max_new_tokens:
        gen.settings = dataclasses.replace(gen.settings, max_new_tokens=args.max_new_tokens)
    if args.system is not None:
        gen.settings = dataclasses.replace(gen.settings, system=args.system)
    if args.manifest:
        return _generate_manifest(gen, Path(args.manifest), args)
    reply = _reply(gen, {"text": args.text, "audio": args.audio, "image": args.image,
                         "video": args.video}, args.speech, not args.no_video_audio, args=args)
    if args.expect is not None and reply.text.strip() != args.expect.strip():
        print(f"expected: {args.expect!r}, got: {reply.text!r}", file=sys.stderr)
        return 1
    return 0


def _reply(gen, prompt: dict, speech: str | None, video_audio: bool = True, label: str = "",
           args: argparse.Namespace | None = None):
    import soundfile as sf

    from omnitrain.inference.generate import user_turn

    conversation = user_turn(prompt["text"], prompt.get("audio"), prompt.get("image"),
                             prompt.get("video"), video_audio)
    speaker, reference = getattr(args, "speaker", None), getattr(args, "reference", None)
    if getattr(args, "stream", False):
        return _stream_reply(gen, conversation, speech, label, speaker, reference)
    t0 = time.perf_counter()
    reply = gen(conversation, speaker=speaker, reference=reference)
    line = f"{label}reply: {reply.text!r}"
    if speech:
        sf.write(speech, reply.wave.numpy(), reply.sample_rate, subtype="PCM_16")
        line += (f"  speech: {speech} ({reply.wave.numel() / reply.sample_rate:.2f}s, "
                 f"{len(reply.codec_tokens)} codec tokens, {reply.sample_rate} Hz)")
    print(line + f"  [{time.perf_counter() - t0:.2f}s]")
    return reply


def _stream_reply(gen, conversation: dict, speech: str | None, label: str, speaker, reference):
    """Print text as it comes; append each audio chunk to the wav as soon as it is ready."""
    import soundfile as sf

    from omnitrain.inference.streaming import AudioPiece, TextPiece

    t0 = time.perf_counter()
    sr = gen.model.speech_cfg.sample_rate
    out = sf.SoundFile(speech, "w", samplerate=sr, channels=1, subtype="PCM_16") if speech else None
    first_audio, chunks, samples, reply = None, 0, 0, None
    print(f"{label}reply: ", end="", flush=True)
    try:
        for piece in gen.stream(conversation, speaker=speaker, reference=reference):
            if isinstance(piece, TextPiece):
                print(piece.text, end="", flush=True)
            elif isinstance(piece, AudioPiece):
                first_audio = first_audio or time.perf_counter() - t0
                chunks += 1
                samples += piece.wave.numel()
                if out is not None:
                    out.write(piece.wave.numpy())
                    out.flush()
            else:
                reply = piece
    finally:
        if out is not None:
            out.close()
    first = f"{first_audio:.2f}s" if first_audio is not None else "none"
    print(f"\n  speech: {speech or '(not written)'} ({samples / sr:.2f}s in {chunks} chunks, "
          f"{len(reply.codec_tokens)} codec tokens); first audio after {first}  "
          f"[{time.perf_counter() - t0:.2f}s]")
    return reply


def _generate_manifest(gen, manifest: Path, args: argparse.Namespace) -> int:
    """Prompts from JSONL ({"text", "audio"/"image"/"video": path, "expected"}), paths
    relative to the manifest's folder; prints each reply and the accuracy."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    speech_dir = Path(args.speech_dir) if args.speech_dir else None
    if speech_dir:
        speech_dir.mkdir(parents=True, exist_ok=True)
    correct = 0
    for i, row in enumerate(rows):
        name = row.get("id", f"{i:04d}")
        prompt = {k: (str(manifest.parent / row[k]) if k != "text" else row[k])
                  for k in ("text", "audio", "image", "video") if row.get(k)}
        speech = str(speech_dir / f"{name}.wav") if speech_dir else None
        reply = _reply(gen, prompt, speech, label=f"{name} [{row.get('kind', '?')}] ", args=args)
        if "expected" in row:
            ok = reply.text.strip() == str(row["expected"]).strip()
            correct += ok
            print(f"    expected {row['expected']!r}: {'ok' if ok else 'WRONG'}")
    scored = sum("expected" in r for r in rows)
    if scored:
        accuracy = correct / scored
        print(f"accuracy: {correct}/{scored} = {accuracy:.2f}")
        if args.min_accuracy is not None and accuracy < args.min_accuracy:
            print(f"accuracy {accuracy:.2f} is below --min-accuracy {args.min_accuracy}", file=sys.stderr)
            return 1
    return 0


def _task_losses(run_dir: Path) -> str:
    """The losses of the run's task (its config.yaml) that the run weighs (``loss.<name>``
    above 0: a run without a DiT logs no flow loss), as train/<loss>."""
    from omegaconf import OmegaConf

    from omnitrain.training.stages.tasks import TASKS

    cfg = OmegaConf.load(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else OmegaConf.create()
    weights = cfg.get("loss") or {}
    return ",".join(f"train/{loss}" for loss in TASKS[cfg.get("task", "omni")].losses
                    if float(weights.get(loss, 1.0)) > 0)


def cmd_summary(args: argparse.Namespace) -> int:
    from omnitrain.run_summary import summarise

    rows = summarise(Path(args.run_dir))
    w = max([28, *(len(r.name) + 1 for r in rows)])
    print(f"{'metric':<{w}} {'first':>10} {'last':>10} {'best':>10} {'better':>6} {'last/first':>10}")
    for r in rows:
        best = f"{r.best:>10.4g}" if r.better else f"{'-':>10}"
        print(f"{r.name:<{w}} {r.first:>10.4g} {r.last:>10.4g} {best} {r.better or '-':>6} {r.ratio:>10.3f}")
    failed = []
    if args.require_drop is not None:
        by_name = {r.name: r for r in rows}
        metrics = args.metrics or _task_losses(Path(args.run_dir))
        for name in metrics.split(","):
            r = by_name.get(name)
            if r is None or not r.ratio <= args.require_drop:
                failed.append(name)
        if failed:
            print(f"did not fall to <= {args.require_drop} of the first value: {failed}", file=sys.stderr)
            return 1
        print(f"ok: {metrics} each fell to <= {args.require_drop} of its first logged value")
    return 0


# ---- parser --------------------------------------------------------------------
CODEC_SPEC_HELP = ("the codec: a registered NAME (pitch, pitch_groups; omnitrain list), NAME:PATH (a codec and its "
                   "checkpoint), or a folder whose codec.json names its \"plugin\"; codec.* overrides still apply")


class _Parser(argparse.ArgumentParser):
    """Overrides also after the options (``data encode IN OUT --codec X recipe=...``): argparse
    fills a verb's ``overrides`` only from the first run of positionals."""

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        if extra and hasattr(parsed, "overrides") and not any(e.startswith("-") for e in extra):
            parsed.overrides = [*parsed.overrides, *extra]
        elif extra:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="omnitrain", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("train", help="train with Hydra overrides, e.g. recipe=demo position=rope1d")
    s.add_argument("overrides", nargs="*")
    s.add_argument("-m", "--multirun", nargs="*", action="extend", metavar="OVERRIDE",
                   help="sweep: one run per combination of comma-separated values (key=a,b), one after "
                   "another, each in <run_dir>/<i>-<overrides>")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("config", help="print the composed config for these overrides")
    s.add_argument("overrides", nargs="*")
    s.set_defaults(func=cmd_config)

    s = sub.add_parser("plan", help="memory per GPU of a recipe under each strategy; warns if it will not fit")
    s.add_argument("overrides", nargs="*")
    s.add_argument("--gpus", type=int, help="GPUs per node (default: trainer.devices if a number, "
                   "else plan.gpus_per_node, the layout the recipe is sized for)")
    s.add_argument("--nodes", type=int, help="nodes (default: trainer.num_nodes or plan.nodes, likewise)")
    s.add_argument("--gpu-memory", type=float, help="memory of one GPU in GiB (default: plan.gpu_memory_gib, 80)")
    s.set_defaults(func=cmd_plan)

    s = sub.add_parser("gpu-check", help="on a GPU machine: every strategy x plugin set in bf16, "
                       "save/resume/export, one 0.5B run; prints a table")
    s.add_argument("--out", default="runs/gpu_check", help="where runs, logs and the table go")
    s.add_argument("--data", default="data/gpu_check", help="demo shards (written if missing)")
    s.add_argument("--parallel", type=int, default=4, help="runs side by side on the GPU")
    s.add_argument("--timeout", type=float, default=240.0, help="seconds before a run is declared hung")
    s.add_argument("--only", nargs="*", help="run only cells whose name contains one of these")
    s.add_argument("--accelerator", choices=["gpu", "cpu"], default="gpu",
                   help="cpu: the same cells on the CPU, to try the check where there is no GPU")
    s.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="appended to every cell's overrides (repeatable), e.g. data.num_workers=8 or size=tiny")
    s.set_defaults(func=cmd_gpu_check)

    s = sub.add_parser("list", help="list the registered plugins of every slot")
    s.add_argument("--plugins", nargs="*", help="extra plugin modules or .py files to load")
    s.set_defaults(func=cmd_list)

    data = sub.add_parser("data", help="build datasets").add_subparsers(dest="data_command", required=True)
    s = data.add_parser("demo", help="write the demo dataset as webdataset shards")
    s.add_argument("out")
    s.add_argument("--profile", choices=["short", "long", "spoken"], default="short",
                   help="short: the seconds-long demo; long: real omni lengths (10-30 s audio, 448x448 "
                        "images, 10 s video, 100-400-token replies) for benchmarks (data=demo_long); spoken: "
                        "replies said as words by 4 espeak-ng voices, questions spoken too (make demo-speech)")
    s.add_argument("--train", type=int, default=None, help="train samples (short: 1600, long: 64)")
    s.add_argument("--val", type=int, default=None, help="val samples (short: 64, long: 8)")
    s.add_argument("--heldout", type=int, default=None, help="held-out prompts (short: 8, spoken: 48)")
    s.add_argument("--per-shard", type=int, default=None, help="samples per shard (short: 200, long: 16)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--codec", metavar="SPEC", help=CODEC_SPEC_HELP)
    s.add_argument("overrides", nargs="*", help="config overrides (e.g. codec=...)")
    s.set_defaults(func=cmd_data_demo)

    s = data.add_parser("resynth", help="recordings through a codec and back (copy-synthesis), for eval --audio")
    s.add_argument("manifest", help='an eval --audio manifest: JSONL of {"audio": wav, "text": ..., ...}')
    s.add_argument("out", help="folder for the decoded wavs and their manifest.jsonl")
    s.add_argument("--codec", metavar="SPEC", help="a codec folder, NAME:PATH or NAME (as data encode)")
    s.add_argument("overrides", nargs="*", help="config overrides (e.g. codec.griffin_lim_iters=64)")
    s.set_defaults(func=cmd_data_resynth)

    s = data.add_parser("convert", help="ShareGPT / LLaMA-Factory / Hugging Face datasets -> a pack manifest")
    s.add_argument("--from", dest="source_format", required=True, choices=["sharegpt", "llamafactory", "hf"])
    s.add_argument("file", help="a .json/.jsonl file, or (hf) a datasets.save_to_disk folder or parquet files")
    s.add_argument("out", help="the manifest to write (JSONL) for `omnitrain data pack`")
    s.add_argument("--video-audio", action="store_true", help="use each video's audio track too")
    s.set_defaults(func=cmd_data_convert)

    s = data.add_parser("pack", help="turn a JSONL manifest into webdataset shards (resumable)")
    s.add_argument("manifest")
    s.add_argument("out")
    s.add_argument("--shard-size", default="256MB", help="target shard size (default 256MB)")
    s.add_argument("--prefix", default="shard", help="shard file prefix, e.g. train or val")
    s.add_argument("--no-verify", action="store_true", help="skip the decode check of every media file")
    s.add_argument("--no-lengths", action="store_true",
                   help="do not record each sample's token count in index.json (data.batching=tokens then "
                        "measures them once at the first training run)")
    s.add_argument("--root", help="only read media inside this folder (symlinks resolved): for manifests "
                                  "from elsewhere")
    s.add_argument("--codec", metavar="SPEC", help=CODEC_SPEC_HELP)
    s.add_argument("overrides", nargs="*", help="config overrides (e.g. codec=...)")
    s.set_defaults(func=cmd_data_pack)

    s = data.add_parser("encode", help="shards re-encoded with another codec: every member copied, the spoken "
                        "replies' codes made anew (docs/data_encode_readme.md)")
    s.add_argument("shards", metavar="IN", help="shards: a folder (its *.tar), a glob or a brace pattern")
    s.add_argument("out", metavar="OUT", help="a new folder for the shards, index.json and skipped.jsonl")
    s.add_argument("--codec", metavar="SPEC", required=True, help=CODEC_SPEC_HELP)
    s.add_argument("--overwrite", action="store_true", help="replace the shards and outputs of a non-empty OUT")
    s.add_argument("--no-lengths", action="store_true",
                   help="do not measure token lengths IN's index.json lacks (they are copied where it has them)")
    s.add_argument("overrides", nargs="*", help="config overrides (e.g. recipe=... codec.groups=2)")
    s.set_defaults(func=cmd_data_encode)

    s = sub.add_parser("summary", help="first/last/best of each logged metric of a run")
    s.add_argument("run_dir")
    s.add_argument("--metrics", help="comma-separated metrics for --require-drop (default: the losses of the run's task)")
    s.add_argument("--require-drop", type=float, help="exit 1 unless each metric's last/first <= this")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser("export", help="turn a training checkpoint into an inference bundle")
    s.add_argument("checkpoint")
    s.add_argument("out")
    s.add_argument("--adapter-only", action="store_true",
                   help="a LoRA run: write only the adapter tensors and the config (default: merge them into the weights)")
    s.add_argument("--format", choices=["bundle", "hf"], default="bundle",
                   help="bundle (omnitrain generate) or hf: a folder transformers' from_pretrained loads")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("import-hf", help="turn a downloaded Hugging Face folder (Qwen2.5-Omni) into a bundle")
    s.add_argument("hf_dir")
    s.add_argument("out")
    s.set_defaults(func=cmd_import_hf)

    s = sub.add_parser("generate", help="reply in text and speech from a bundle")
    s.add_argument("bundle")
    s.add_argument("--text", help="the question")
    s.add_argument("--audio")
    s.add_argument("--image")
    s.add_argument("--video")
    s.add_argument("--no-video-audio", action="store_true", help="ignore the video's audio track")
    s.add_argument("--speech", help="write the spoken reply to this .wav")
    s.add_argument("--max-new-tokens", type=int)
    s.add_argument("--expect", help="exit with status 1 unless the reply text equals this")
    s.add_argument("--manifest", help="JSONL of prompts (as in data/demo/heldout/manifest.jsonl)")
    s.add_argument("--speech-dir", help="with --manifest: write each spoken reply here")
    s.add_argument("--min-accuracy", type=float, help="with --manifest: exit 1 below this accuracy")
    s.add_argument("--stream", action="store_true",
                   help="stream: text as it is generated, audio chunks written as they are ready")
    s.add_argument("--system", help="system prompt (default: generate.system of the bundle's config, "
                   "else the tokenizer's default_system)")
    s.add_argument("--speaker", help="a voice from the model's speech.speakers (default: the first)")
    s.add_argument("--reference", help="a wav of the voice to condition the DiT on")
    s.add_argument("--trust-plugins", action="store_true",
                   help="load a bundle that carries plugin code (plugins/*.py): it runs that code")
    s.add_argument("--device", help="where the model runs: cpu (default), cuda, cuda:1, ...")
    s.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], help="the weights' dtype (default fp32, as stored)")
    s.set_defaults(func=cmd_generate)
    from omnitrain.evaluation.command import add_parser as add_eval_parser

    add_eval_parser(sub)
    from omnitrain.cli_help import attach_help

    attach_help(p)  # every verb's --help: its recipes, config groups and examples
    return p


def _stacks_on_signal() -> None:
    """``kill -USR2 PID`` prints every thread's stack of a hung run to stderr; it goes on."""
    if not hasattr(signal, "SIGUSR2"):
        return
    # no real stderr (captured, embedded): no dumps, nothing else changes
    with contextlib.suppress(ValueError, OSError, RuntimeError, AttributeError):
        faulthandler.register(signal.SIGUSR2, file=sys.__stderr__, all_threads=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Lightning prints through its own handler on the "lightning" logger, which would also
    # propagate to the root handler above: every Lightning line printed twice
    logging.getLogger("lightning").propagate = False
    _stacks_on_signal()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
