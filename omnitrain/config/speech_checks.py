"""Config checks of the speech side that tie sections together: sampler names,
speakers, a pretrained codec's path. Each problem says what to set."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from omnitrain.features.speech_mel import SpeechConfig
from omnitrain.registry import plugin_config, registry
from omnitrain.slots import PretrainedCodec

STREAM_MODES = ("exact", "window")


def check_speech(cfg: DictConfig) -> list[str]:
    problems: list[str] = []
    speakers = list(cfg.get("speech", {}).get("speakers", ["default"]) or [])
    if not speakers or len(set(speakers)) != len(speakers):
        problems.append(f"speech.speakers={speakers} must name at least one voice, each once")
    gen = cfg.get("generate")
    if gen is not None:
        if gen.get("stream_mode", "exact") not in STREAM_MODES:
            problems.append(f"generate.stream_mode={gen.stream_mode!r}: use one of {list(STREAM_MODES)}")
        if gen.get("speaker") is not None and gen.speaker not in speakers:
            problems.append(f"generate.speaker={gen.speaker!r} is not one of speech.speakers={speakers}")
    codec = cfg.get("codec")
    if codec is not None and codec.get("name") in registry("codec"):
        cls = registry("codec").get(codec.name).cls
        if issubclass(cls, PretrainedCodec) and not Path(str(codec.get("path"))).exists():
            problems.append(f"codec.path={codec.get('path')!r} does not exist: codec={codec.name} "
                            "loads a pretrained codec from a local path (nothing is downloaded)")
    vocoder = cfg.get("vocoder")
    if vocoder is not None and vocoder.get("name") in registry("vocoder"):
        cls = registry("vocoder").get(vocoder.name).cls
        if "speech" in cfg:
            try:
                problems += cls.check_config(plugin_config("vocoder", vocoder), SpeechConfig(**cfg.speech))
            except Exception as exc:  # a malformed plugin config is reported elsewhere
                problems.append(str(exc))
    return problems
