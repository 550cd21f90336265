"""What a spectrogram round trip costs the offline recogniser: the spoken demo's held-out
recordings (``heldout/truth.jsonl``) as they are, through the run's 80-band mel and
Griffin-Lim (the DiT path's ``vocoder=griffin_lim``), and through linear log-magnitude frames
and Griffin-Lim (what ``codec=fsq`` reconstructs). Word error rate of pocketsphinx over the
digits (closed vocabulary), as ``omnitrain eval --asr pocketsphinx --closed-vocabulary``.

    python benchmarks/speech_roundtrip.py data/demo-speech/heldout/truth.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torchaudio

from omnitrain.evaluation.items import read_audio
from omnitrain.evaluation.pocketsphinx_asr import PocketsphinxASR
from omnitrain.evaluation.speech_scores import read_wave
from omnitrain.evaluation.text_scores import error_rate
from omnitrain.features.speech_mel import SpeechConfig, SpeechMel
from omnitrain_plugins.griffin_lim import GriffinLimConfig, GriffinLimVocoder


def mel_round_trip(cfg: SpeechConfig, iters: int = 64):
    mel = SpeechMel(cfg)
    vocoder = GriffinLimVocoder(GriffinLimConfig(n_iter=iters), mel)
    return lambda wave: vocoder(mel(wave)[None])[0]


def linear_round_trip(n_fft: int, hop: int, iters: int = 64):
    window = torch.hann_window(n_fft)

    def run(wave):
        spec = torch.stft(wave, n_fft, hop, window=window, return_complex=True).abs()
        return torchaudio.functional.griffinlim(spec, window, n_fft, hop, n_fft, 1.0, iters, 0.99, len(wave), True)
    return run


def main(manifest: str) -> None:
    items = read_audio(Path(manifest))
    asr = PocketsphinxASR()
    asr.restrict_to({w for i in items for w in (i.text or "").split()})
    ways = {
        "the recordings": lambda w: w,
        "mel 80 (n_fft 1024, hop 320) + Griffin-Lim": mel_round_trip(SpeechConfig()),
        "mel 80 (n_fft 512, hop 128) + Griffin-Lim": mel_round_trip(SpeechConfig(n_fft=512, hop_length=128)),
        "mel 128 (n_fft 512, hop 128) + Griffin-Lim": mel_round_trip(SpeechConfig(n_fft=512, hop_length=128,
                                                                                   n_mels=128)),
        "linear 513 bins (n_fft 1024, hop 320) + Griffin-Lim": linear_round_trip(1024, 320),
        "linear 257 bins (n_fft 512, hop 128) + Griffin-Lim": linear_round_trip(512, 128),
    }
    print(f"| {len(items)} recordings | wer |\n|---|---|")
    for name, way in ways.items():
        torch.manual_seed(0)
        pairs = []
        for item in items:
            wave, rate = read_wave(item.audio)
            pairs.append((item.text, asr.transcribe(way(wave.float().reshape(-1)), rate)))
        print(f"| {name} | {error_rate(pairs):.3f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
