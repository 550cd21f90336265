"""Config checks of the path from codes to a waveform: the DiT and the vocoder agree on what
the vocoder reads (mel frames, or codes with ``dit=none``), and the rates the codec and the
decoders declare meet: codes/s x mel frames per code = mel frames/s, and for a vocoder that
decodes codes, codes/s x samples per code = samples/s. Each problem says what to set."""

from __future__ import annotations

from omegaconf import DictConfig

from omnitrain.registry import build, plugin_config, registry
from omnitrain.slots import CodesVocoder


def check_decoders(cfg: DictConfig) -> list[str]:
    """Pairing and rates; run once every slot's plugin is known to be valid."""
    dit_cls = registry("dit").get(cfg.dit.name).cls
    vocoder_cls = registry("vocoder").get(cfg.vocoder.name).cls
    codes_vocoder = issubclass(vocoder_cls, CodesVocoder)
    problems = []
    if not dit_cls.makes_mel and not codes_vocoder:
        choices = [e.name for e in registry("vocoder").entries() if issubclass(e.cls, CodesVocoder)]
        problems.append(f"dit={cfg.dit.name} makes no mel, so the vocoder must decode codes: vocoder={cfg.vocoder.name} "
                        f"reads mel frames; choose one that decodes codes ({choices or 'none is registered'})")
    if dit_cls.makes_mel and codes_vocoder:
        problems.append(f"vocoder={cfg.vocoder.name} decodes codes straight to a waveform: set dit=none "
                        f"(dit={cfg.dit.name} would make mel frames nothing reads)")
    if not dit_cls.makes_mel and cfg.loss.flow > 0:
        problems.append(f"dit={cfg.dit.name} has no flow loss: set loss.flow=0")
    return problems + _group_problems(cfg, codes_vocoder) + _rate_problems(cfg, codes_vocoder)


def _group_problems(cfg: DictConfig, codes_vocoder: bool) -> list[str]:
    """A codec with several code groups per frame needs a Talker and a decoder that take them."""
    groups = build("codec", cfg.codec).groups
    if groups == 1:
        return []
    readers = ["talker", "vocoder" if codes_vocoder else "dit"]
    refuse = [slot for slot in readers if not registry(slot).get(cfg[slot].name).cls.takes_code_groups]
    return [f"codec={cfg.codec.name} gives {groups} code groups per frame but {slot}={cfg[slot].name} takes one "
            f"(takes_code_groups): choose a {slot} that takes code groups, or a codec with one" for slot in refuse]


def _rate_problems(cfg: DictConfig, codes_vocoder: bool) -> list[str]:
    codec = build("codec", cfg.codec)
    k = plugin_config("dit", cfg.dit).mel_frames_per_code
    mel_fps = cfg.speech.sample_rate / cfg.speech.hop_length
    problems = []
    if abs(codec.frame_rate * k - mel_fps) > 1e-6:
        problems.append(
            f"codec '{cfg.codec.name}' gives {codec.frame_rate:g} tokens/s and dit.mel_frames_per_code={k}, "
            f"so the DiT makes {codec.frame_rate * k:g} mel frames/s, but speech.sample_rate / "
            f"speech.hop_length = {mel_fps:g} frames/s. Change speech.hop_length or "
            f"dit.mel_frames_per_code so they agree."
        )
    if codes_vocoder:
        vocoder_cls = registry("vocoder").get(cfg.vocoder.name).cls
        n = vocoder_cls.samples_per_code(plugin_config("vocoder", cfg.vocoder))
        if abs(codec.frame_rate * n - cfg.speech.sample_rate) > 1e-6:
            problems.append(
                f"codec '{cfg.codec.name}' gives {codec.frame_rate:g} codes/s and vocoder={cfg.vocoder.name} "
                f"decodes each to {n} samples: {codec.frame_rate * n:g} samples/s, but speech.sample_rate="
                f"{cfg.speech.sample_rate}. Change the vocoder's samples per code or speech.sample_rate."
            )
    return problems
