"""The ``omnitrain eval`` command line: bundles reply to a manifest's prompts, or
``--audio`` scores recordings; a table on the terminal, the report as JSON with ``--out``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omnitrain.evaluation.errors import EvalError
from omnitrain.evaluation.items import SAY


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("eval", help="score bundles' replies (text and speech), or recordings with --audio")
    s.add_argument("bundles", nargs="*", metavar="BUNDLE", help="bundles to compare (none with --audio)")
    s.add_argument("--manifest", help="JSONL of prompts (generate --manifest's, plus expected and reference), "
                   "or a seed-tts-eval list (.lst: utt|prompt_text|prompt_wav|target_text)")
    s.add_argument("--audio", metavar="MANIFEST", help="score recordings instead: JSONL of "
                   '{"audio": wav, "text": what it says, "reference": wav of the voice}')
    s.add_argument("--out", help="write the report (JSON) here; spoken replies go beside it")
    s.add_argument("--asr", metavar="NAME[:PATH]", help="speech recogniser for wer/cer (e.g. pocketsphinx, "
                   "whisper:PATH); without it they are null")
    s.add_argument("--speaker", metavar="NAME[:PATH]", help="speaker encoder for sim (e.g. resemblyzer, "
                   "wavlm:PATH); without it sim is null")
    s.add_argument("--voices", metavar="JSONL", help='one recording of each voice, {"speaker": name, "audio": wav} '
                   "a line: voice_id is the share of replies nearest the voice their item's speaker names "
                   "(needs --speaker)")
    s.add_argument("--closed-vocabulary", action="store_true",
                   help="recognise only the words of the manifest's texts (a word loop, never the sentences)")
    s.add_argument("--say", default=SAY, help=f"prompt of a seed-tts-eval line (default {SAY!r})")
    s.add_argument("--plugins", nargs="*", default=[], help="modules that register scorers or model plugins")
    s.add_argument("--device", help="where the bundles run: cpu (default), cuda, cuda:1, ...")
    s.add_argument("--dtype", choices=["fp32", "bf16", "fp16"], help="the weights' dtype (default fp32, as stored)")
    s.add_argument("--batch", type=int, default=8, metavar="N",
                   help="prompts the Thinker decodes together (default 8; greedy replies do not change)")
    s.add_argument("--trust-plugins", action="store_true",
                   help="load a bundle that carries plugin code (plugins/*.py): it runs that code")
    s.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from omnitrain.evaluation.items import read_audio, read_prompts
    from omnitrain.evaluation.report import table, write
    from omnitrain.evaluation.run import eval_audio, eval_bundle
    from omnitrain.evaluation.scorer_lookup import build_asr, build_speaker
    from omnitrain.evaluation.speech_scores import SpeechScorer
    from omnitrain.evaluation.text_scores import normalise
    from omnitrain.plugin_loading import load_plugins

    if bool(args.audio) == bool(args.manifest):
        raise EvalError("give --manifest (with bundles) or --audio (without), one of them")
    if args.manifest and not args.bundles:
        raise EvalError("--manifest needs one or more bundles to evaluate")
    if args.audio and args.bundles:
        raise EvalError("--audio scores recordings; give no bundles with it")
    if args.batch < 1:
        raise EvalError(f"--batch {args.batch}: give 1 or more prompts to decode together")
    load_plugins(args.plugins)
    items = read_audio(Path(args.audio)) if args.audio else read_prompts(Path(args.manifest), args.say)
    asr = build_asr(args.asr) if args.asr else None
    speaker = build_speaker(args.speaker) if args.speaker else None
    if asr is not None and args.closed_vocabulary:
        texts = [i.text for i in items] if args.audio else [i.expected for i in items]  # what is said
        asr.restrict_to({w for t in texts if t for w in normalise(t).split()})
    scorer = SpeechScorer(asr, speaker)
    voices = None
    if args.voices:
        from omnitrain.evaluation.items import read_voices
        from omnitrain.evaluation.voice_id import VoiceIdentifier

        if speaker is None:
            raise EvalError("--voices compares voices with a speaker encoder: give --speaker too (e.g. resemblyzer)")
        voices = VoiceIdentifier(speaker, read_voices(Path(args.voices)))
    out = Path(args.out) if args.out else None
    report: dict = {"bundles": {}, "asr": args.asr, "speaker": args.speaker}
    if args.audio:
        report["bundles"]["audio"] = eval_audio(items, scorer, voices)
    else:
        from omnitrain.inference.generate import Generator
        from omnitrain.inference.placement import parse_device, parse_dtype

        device, dtype = parse_device(args.device), parse_dtype(args.dtype)

        names = bundle_names([Path(b) for b in args.bundles])
        audio_root = (out.parent if out else Path(".")) / ((out.stem if out else "eval") + "_audio")
        for bundle, name in zip(args.bundles, names, strict=True):
            gen = Generator(Path(bundle), trust_plugins=args.trust_plugins, device=device, dtype=dtype,
                            batch_size=args.batch)
            report["bundles"][name] = eval_bundle(gen, items, scorer, audio_root / name, name, voices)
    print(table(report))
    if out is not None:
        write(report, out)
        print(f"report: {out}", file=sys.stderr)
    return 0


def bundle_names(paths: list[Path]) -> list[str]:
    """A short, distinct name per bundle: its folder's name, with its parent's where two share one."""
    names = [p.resolve().name for p in paths]
    if len(set(names)) < len(names):
        names = [f"{p.resolve().parent.name}/{p.resolve().name}" for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    return names
