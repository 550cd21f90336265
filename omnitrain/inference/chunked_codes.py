"""Streaming through a vocoder that decodes codes (``CodesVocoder``): every ``chunk``
codes, the new ones are decoded with ``left_context_codes`` codes before them and only the
new codes' samples kept, those of the last ``right_context_codes`` held back until the codes
after them are known (or the reply ends), so a decoder that reads that far back and ahead
streams exactly what whole decoding gives."""

from __future__ import annotations

import torch
from torch import Tensor

from omnitrain.slots import CodesVocoder, SpeechCondition


class ChunkedCodes:
    def __init__(self, vocoder: CodesVocoder, cond: SpeechCondition | None, chunk: int = 4) -> None:
        self.vocoder, self.cond, self.chunk = vocoder, cond, max(1, chunk)
        self.codes: list[Tensor] = []  # scalars, or (Q,) frames
        self.done = 0  # codes whose samples were handed out

    def push(self, code: int | Tensor) -> Tensor:
        """Add a code (a frame of Q codes with several groups); the samples of the codes
        decided since the last chunk, or none yet."""
        self.codes.append(torch.as_tensor(code, dtype=torch.long))
        ready = len(self.codes) - self.vocoder.right_context_codes  # codes whose samples are final
        return self._decode(ready) if ready - self.done >= self.chunk else torch.zeros(0)

    def finish(self) -> Tensor:
        return self._decode(len(self.codes)) if len(self.codes) > self.done else torch.zeros(0)

    @torch.no_grad()
    def _decode(self, ready: int) -> Tensor:
        """The samples of codes [done, ready), decoded with every code known after them."""
        start = max(0, self.done - self.vocoder.left_context_codes)
        device = next(iter(self.vocoder.parameters()), torch.zeros(0)).device
        window = torch.stack(self.codes[start:])[None].to(device)
        mask = torch.ones(window.shape[:2], dtype=torch.bool, device=device)
        wave = self.vocoder.decode(window, mask, self.cond)[0]
        per_code = wave.shape[-1] // window.shape[1]  # decode gives whole codes' samples
        new = wave[(self.done - start) * per_code:(ready - start) * per_code]
        self.done = ready
        return new
