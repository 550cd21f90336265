"""``--speaker resemblyzer``: the GE2E voice encoder whose weights the ``resemblyzer``
package ships (a 3-layer LSTM over 40 mel bands, 256-d embeddings; ``pip install --no-deps
resemblyzer==0.1.4``), run by our own code so that neither librosa nor webrtcvad (a source
package) is needed. As resemblyzer: 16 kHz, loudness raised to -30 dBFS (never lowered),
the mel power spectrogram (25 ms windows, 10 ms hop, Slaney mel bands, not logged), 1.6 s
partials at 1.3 per second, their embeddings averaged and L2-normed. resemblyzer shortens
long pauses with a voice detector; here leading and trailing frames 40 dB below the loudest
are trimmed instead (speech in evaluation has little inner silence)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torchaudio
from torch import Tensor, nn

from omnitrain.evaluation.scorers import SpeakerEncoder, register_speaker

RATE, HOP, WINDOW, MELS, PARTIAL = 16000, 160, 400, 40, 160
TARGET_DBFS = -30.0


def weights_file() -> Path:
    try:
        import importlib.util

        spec = importlib.util.find_spec("resemblyzer")
    except ImportError:
        spec = None
    if spec is None or spec.origin is None:
        raise ImportError("--speaker resemblyzer reads the weights the resemblyzer package ships: "
                          "pip install --no-deps resemblyzer==0.1.4 (our code needs none of its dependencies)")
    return Path(spec.origin).parent / "pretrained.pt"


class VoiceEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(MELS, 256, 3, batch_first=True)
        self.linear = nn.Linear(256, 256)

    def forward(self, mels: Tensor) -> Tensor:
        """(B, frames, 40) mel power -> (B, 256) L2-normed, non-negative embeddings."""
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True)


def partial_starts(samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[int]:
    """First mel frame of each 160-frame partial (resemblyzer's ``compute_partial_slices``)."""
    frames = math.ceil((samples + 1) / HOP)
    step = round((RATE / rate) / HOP)
    starts = list(range(0, max(1, frames - PARTIAL + step + 1), step))
    coverage = (samples - starts[-1] * HOP) / (PARTIAL * HOP)
    if coverage < min_coverage and len(starts) > 1:
        starts = starts[:-1]
    return starts


class ResemblyzerSpeaker(SpeakerEncoder):
    def __init__(self, weights: Path) -> None:
        state = torch.load(weights, map_location="cpu", weights_only=True)["model_state"]
        self.model = VoiceEncoder().eval()
        self.model.load_state_dict({k: v for k, v in state.items() if not k.startswith("similarity_")})
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=RATE, n_fft=WINDOW, hop_length=HOP, n_mels=MELS, f_min=0.0, f_max=RATE / 2, power=2.0,
            norm="slaney", mel_scale="slaney", center=True, pad_mode="constant")

    def prepare(self, wave: Tensor, sample_rate: int) -> Tensor:
        wave = wave.float().reshape(-1)
        if sample_rate != RATE:
            wave = torchaudio.functional.resample(wave, sample_rate, RATE)
        rms = wave.pow(2).mean().sqrt().clamp_min(1e-9)
        gain = TARGET_DBFS - 20 * math.log10(float(rms))
        if gain > 0:
            wave = wave * 10 ** (gain / 20)
        frames = wave[: len(wave) // HOP * HOP].view(-1, HOP).pow(2).mean(1)
        loud = torch.nonzero(frames > frames.max() * 1e-4)[:, 0]  # 40 dB below the loudest frame
        if loud.numel():
            wave = wave[int(loud[0]) * HOP: (int(loud[-1]) + 1) * HOP]
        return wave

    @torch.no_grad()
    def embed(self, wave: Tensor, sample_rate: int) -> Tensor:
        wave = self.prepare(wave, sample_rate)
        starts = partial_starts(len(wave))
        need = (starts[-1] + PARTIAL) * HOP
        if need >= len(wave):
            wave = torch.nn.functional.pad(wave, (0, need - len(wave)))
        mel = self.mel(wave).T  # (frames, 40)
        partials = torch.stack([mel[s: s + PARTIAL] for s in starts])
        mean = self.model(partials).mean(0)
        return mean / mean.norm()


@register_speaker("resemblyzer")
def resemblyzer_speaker(path: Path | None) -> ResemblyzerSpeaker:
    """Offline GE2E voice encoder (weights the resemblyzer package ships; :PATH a .pt of its kind)."""
    return ResemblyzerSpeaker(path if path is not None else weights_file())
