"""One conversation -> Thinker tokens, layout, position ids, media features, speech targets.

A conversation (the ``json`` member of a shard sample) is::

    {"turns": [
      {"role": "user", "content": [{"text": "..."}, {"audio": "audio_0.wav"},
                                   {"image": "image_0.png"},
                                   {"video": "video_0.mp4", "use_audio": true}]},
      {"role": "assistant", "content": [{"text": "3 7"}],
       "speech": "reply.wav", "codec": "reply.codec.npy",
       "speaker": "default", "reference": "ref.wav"}]}

A first turn ``{"role": "system", "content": [{"text": "..."}]}`` sets the system
prompt; without one, the tokenizer's ``default_system`` (if any) is put first. How a
turn opens and closes is the tokenizer's chat template (``Tokenizer.turn_tokens``).

Media values name members of the same sample. Text loss covers every assistant
turn's content and its closing token (never the template's role headers); the assistant turn with ``speech`` gives the Talker and DiT targets. Its codec
tokens are used as they are (computed when the shard was built). ``speaker`` (optional,
default: the first of ``speech.speakers``) and ``reference`` (optional, another
utterance of that voice) condition the DiT; without a reference it speaks with none.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from omnitrain.config.typed import RunConfig
from omnitrain.data.media import MediaError, load_audio, load_image, load_video, require_finite
from omnitrain.data.turns import turn_problem
from omnitrain.features.speech_mel import SpeechConfig, SpeechMel
from omnitrain.positions.layout import AudioSeg, ImageSeg, Segment, TextSeg, VideoSeg, layout_length
from omnitrain.registry import build, plugin_config, registry
from omnitrain.slots import AudioFeatureExtractor, PositionScheme, Tokenizer, VisionProcessor
from omnitrain.tokens import IGNORE_INDEX, ROLE_CODES


class SampleError(ValueError):
    """A sample that cannot be used; the message names the sample and the field."""


@dataclass
class Example:
    key: str
    input_ids: Tensor  # (L,)
    position_ids: Tensor  # (rows, L)
    labels: Tensor  # (L,)
    layout: list[Segment]
    audio_features: list[Tensor] = field(default_factory=list)  # (n_mels, frames) each
    vision_patches: list[Tensor] = field(default_factory=list)
    vision_grids: list[tuple[int, int, int]] = field(default_factory=list)
    reply_positions: Tensor | None = None  # positions of the spoken reply's tokens
    codec_tokens: Tensor | None = None
    speech_mel: Tensor | None = None
    speaker: int = 0  # index into speech.speakers
    reference_mel: Tensor | None = None  # (frames, n_mels) of the speaker's reference
    turn_roles: Tensor | None = None  # (L,) int8 each token's turn role (``ROLE_CODES``)

    def __len__(self) -> int:
        return int(self.input_ids.numel())


class _Sequence:
    """Accumulates tokens, labels and layout segment by segment."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.labels: list[int] = []
        self.layout: list[Segment] = []
        self.roles: list[int] = []

    def turn_ends(self, role: str) -> None:
        """The tokens written since the last turn ended belong to a ``role`` turn."""
        self.roles += [ROLE_CODES[role]] * (len(self.ids) - len(self.roles))

    def text(self, ids: list[int], train: bool = False) -> None:
        self.ids += ids
        self.labels += ids if train else [IGNORE_INDEX] * len(ids)
        if self.layout and isinstance(self.layout[-1], TextSeg):
            self.layout[-1] = TextSeg(self.layout[-1].n + len(ids))
        elif ids:
            self.layout.append(TextSeg(len(ids)))

    def media(self, ids: list[int], seg: Segment) -> None:
        self.ids += ids
        self.labels += [IGNORE_INDEX] * len(ids)
        self.layout.append(seg)


class SampleBuilder:
    """Builds ``Example``s with the tokenizer, processors and position scheme of a config."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        audio_features: AudioFeatureExtractor,
        vision: VisionProcessor,
        position: PositionScheme,
        speech: SpeechConfig,
        mel_frames_per_code: int,
        codec_vocab_size: int,
        max_tokens: int = 4096,
        code_groups: int = 1,
    ) -> None:
        self.tok = tokenizer
        self.special = tokenizer.special_ids()
        self.audio_fe = audio_features
        self.vision = vision
        self.position = position
        self.speech = speech
        self.speech_mel = SpeechMel(speech)
        self.mel_frames_per_code = mel_frames_per_code
        self.codec_vocab_size = codec_vocab_size
        self.code_groups = code_groups
        self.max_tokens = max_tokens

    @classmethod
    def from_config(cls, cfg: RunConfig) -> SampleBuilder:
        audio_cls = registry("audio_encoder").get(cfg.audio_encoder.name).cls
        vision_cls = registry("vision_encoder").get(cfg.vision_encoder.name).cls
        dit_cfg = plugin_config("dit", cfg.dit)
        codec = build("codec", cfg.codec)
        return cls(
            tokenizer=build("tokenizer", cfg.tokenizer),
            audio_features=audio_cls.feature_extractor(plugin_config("audio_encoder", cfg.audio_encoder)),
            vision=vision_cls.processor(plugin_config("vision_encoder", cfg.vision_encoder)),
            position=build("position", cfg.position),
            speech=cfg.speech,
            mel_frames_per_code=dit_cfg.mel_frames_per_code,
            codec_vocab_size=codec.vocab_size,
            max_tokens=cfg.data.max_tokens,
            code_groups=codec.groups,
        )

    # ---- public ---------------------------------------------------------------
    def build(
        self, conversation: Mapping, media: Callable[[str], bytes], key: str, for_generation: bool = False
    ) -> Example:
        """``media(name)`` returns the bytes of a referenced member or file."""
        turns = conversation.get("turns")
        if not isinstance(turns, list) or not turns:
            raise SampleError(f"sample {key}: 'turns' must be a non-empty list")
        given = len(turns)
        turns = self._with_system(turns, key)
        added = len(turns) - given  # errors number the turns as the sample wrote them
        seq, ex = _Sequence(), Example(key, None, None, None, [])  # type: ignore[arg-type]
        speech_turn = None
        for i, turn in enumerate(turns):
            role = turn.get("role")
            name = f"turns[{i - added}]" if i >= added else "the default system turn"
            try:
                template = self.tok.turn_tokens(role)
            except (KeyError, ValueError) as exc:  # e.g. a tokenizer without a system token
                raise SampleError(f"sample {key}: {name}: {exc}") from exc
            where = f"sample {key}: {name}"
            start = self._content(seq, ex, turn.get("content", []), media, where, role)
            seq.text(list(template.close), train=role == "assistant")
            if role == "assistant" and "speech" in turn:
                speech_turn = (turn, list(range(start, len(seq.ids))))
            seq.text(list(template.after))
            seq.turn_ends(role)
        if for_generation:
            seq.text(self.tok.generation_prompt())
            seq.turn_ends("assistant")
        if len(seq.ids) > self.max_tokens:
            raise SampleError(
                f"sample {key}: {len(seq.ids)} tokens exceed data.max_tokens={self.max_tokens}"
            )
        assert len(seq.ids) == layout_length(seq.layout) == len(seq.roles), "layout, roles and tokens disagree"
        ex.input_ids = torch.tensor(seq.ids, dtype=torch.long)
        ex.labels = torch.tensor(seq.labels, dtype=torch.long)
        ex.turn_roles = torch.tensor(seq.roles, dtype=torch.int8)
        ex.layout = seq.layout
        ex.position_ids = self.position.position_ids(seq.layout)
        if speech_turn is not None:
            self._speech(ex, *speech_turn, media, key)
        return ex

    def _with_system(self, turns: list, key: str) -> list:
        """Checks every turn (``omnitrain.data.turns``, as packing does); puts the tokenizer's
        default system turn first where there is none."""
        for i, turn in enumerate(turns):
            problem = turn_problem(turn, i)
            if problem:
                raise SampleError(f"sample {key}: {problem}")
        default = self.tok.default_system
        if turns[0]["role"] != "system" and default:
            return [{"role": "system", "content": [{"text": default}]}, *turns]
        return turns

    def _content(self, seq: _Sequence, ex: Example, parts, media, where: str, role: str) -> int:
        """The turn's opening, then its parts in order; adjacent text parts are encoded as one
        string, as a chat template joins them, and a leading text together with the opening
        (``Tokenizer.encode_turn_start``). Returns where the content starts."""
        train = role == "assistant"
        text: list[str] = []
        start: int | None = None  # None: the opening is not written yet

        def flush() -> None:
            nonlocal start
            if start is None:
                head, ids = self.tok.encode_turn_start(role, "".join(text)) if text else (
                    list(self.tok.turn_tokens(role).open), [])
                seq.text(head)
                start = len(seq.ids)
            else:
                ids = self.tok.encode("".join(text)) if text else []
            seq.text(ids, train=train)
            text.clear()

        for j, part in enumerate(parts):  # their shapes were checked (``turn_problem``)
            if "text" in part:
                text.append(part["text"])
                continue
            flush()
            self._part(seq, ex, part, media, f"{where}.content[{j}]")
        flush()
        return start

    # ---- parts ----------------------------------------------------------------
    def _part(self, seq: _Sequence, ex: Example, part: Mapping, media, where: str) -> None:
        """One media part (text parts are joined in ``_content``)."""
        sp = self.special
        if "audio" in part:
            wave = load_audio(media(part["audio"]), self.audio_fe.sample_rate, f"{where} ({part['audio']})")
            feats, n = self._audio_features(wave, where)
            ex.audio_features.append(feats)
            seq.media([sp["audio_bos"]] + [sp["audio"]] * n + [sp["audio_eos"]], AudioSeg(n))
        elif "image" in part:
            rgb = load_image(media(part["image"]), f"{where} ({part['image']})")
            patches, grid = self.vision.image(rgb)
            seg = ImageSeg(self._llm_grid(grid))
            ex.vision_patches.append(patches)
            ex.vision_grids.append(grid)
            seq.media([sp["vision_bos"]] + [sp["image"]] * seg.tokens + [sp["vision_eos"]], seg)
        else:
            self._video(seq, ex, part, media, where)

    def _video(self, seq: _Sequence, ex: Example, part: Mapping, media, where: str) -> None:
        sp, v = self.special, self.vision
        use_audio = bool(part.get("use_audio", False))
        video = load_video(
            media(part["video"]), v.video_fps, v.min_frames, v.max_frames,
            self.audio_fe.sample_rate if use_audio else None, f"{where} ({part['video']})",
        )
        patches, grid = v.video(video.frames)
        second_per_grid = v.temporal_patch_size / video.fps
        ex.vision_patches.append(patches)
        ex.vision_grids.append(grid)
        llm_grid = self._llm_grid(grid)
        if not use_audio:
            seg = VideoSeg(llm_grid, second_per_grid)
            seq.media([sp["vision_bos"]] + [sp["video"]] * seg.tokens + [sp["vision_eos"]], seg)
            return
        feats, n = self._audio_features(video.audio, where + " audio track")
        ex.audio_features.append(feats)
        seg = VideoSeg(llm_grid, second_per_grid, n)
        order = self.position.video_audio_order(seg)
        body = torch.where(order, sp["audio"], sp["video"]).tolist()
        ids = [sp["vision_bos"], sp["audio_bos"]] + body + [sp["audio_eos"], sp["vision_eos"]]
        seq.media(ids, seg)

    def _audio_features(self, wave: Tensor, where: str) -> tuple[Tensor, int]:
        feats = self.audio_fe(wave)
        require_finite(feats, f"{where} features")  # e.g. a float wav with values near float32's limit
        n = self.audio_fe.num_tokens(feats.shape[-1])
        if n <= 0:
            raise MediaError(f"{where}: audio too short ({wave.numel()} samples) to give one token")
        return feats, n

    def _llm_grid(self, grid: tuple[int, int, int]) -> tuple[int, int, int]:
        m = self.vision.merge_size
        return (grid[0], grid[1] // m, grid[2] // m)

    def _speech(self, ex: Example, turn: Mapping, positions: list[int], media, key: str) -> None:
        where = f"sample {key}: spoken reply"
        if "codec" not in turn:
            raise SampleError(f"{where} has 'speech' but no 'codec' tokens; rebuild the shard")
        speakers = list(self.speech.speakers)
        name = turn.get("speaker", speakers[0])
        if name not in speakers:
            raise SampleError(
                f"{where}: unknown speaker {name!r}; the model knows {speakers} (add it to "
                "speech.speakers to train a new voice)"
            )
        raw = np.load(io.BytesIO(media(turn["codec"])), allow_pickle=False)
        if raw.dtype.kind not in "iu":
            raise SampleError(f"{where}: codec tokens must be integers, got {raw.dtype}; rebuild the shard")
        codes = torch.from_numpy(raw).long()
        if codes.dim() == 2 and codes.shape[1] == 1 and self.code_groups == 1:
            codes = codes[:, 0]  # one group, written as (n, 1)
        want = "(n,)" if self.code_groups == 1 else f"(n, {self.code_groups})"
        if codes.shape[1:] != (() if self.code_groups == 1 else (self.code_groups,)):
            raise SampleError(f"{where}: codec tokens have shape {tuple(codes.shape)} but the codec has "
                              f"{self.code_groups} code group(s) per frame, so {want}: the shard was built "
                              f"with another codec")
        if codes.numel() == 0:
            raise SampleError(f"{where}: codec tokens are empty")
        if codes.min() < 0 or codes.max() >= self.codec_vocab_size:
            raise SampleError(
                f"{where}: codec tokens span [{int(codes.min())}, {int(codes.max())}] but the codec "
                f"vocabulary has {self.codec_vocab_size} ids; the shard was built with another codec"
            )
        wave = load_audio(media(turn["speech"]), self.speech.sample_rate, where)
        k = self.mel_frames_per_code
        if wave.numel() < max(k * self.speech.hop_length, self.speech.n_fft // 2 + 1):
            raise SampleError(f"{where}: the speech ({wave.numel()} samples) is shorter than one codec frame")
        mel = self.speech_mel(wave)
        require_finite(mel, f"{where} mel")
        n = min(codes.shape[0], mel.shape[0] // k)  # frames (each of code_groups codes)
        if "reference" in turn:
            ref = load_audio(media(turn["reference"]), self.speech.sample_rate, f"{where} reference")
            if ref.numel() <= self.speech.n_fft // 2:
                raise SampleError(f"{where}: the reference ({ref.numel()} samples) is too short for one mel frame")
            ex.reference_mel = self.speech_mel(ref)[: self.speech.max_reference_frames]
            require_finite(ex.reference_mel, f"{where} reference mel")
        ex.speaker = speakers.index(name)
        ex.codec_tokens = codes[:n]
        ex.speech_mel = mel[: n * k]
        ex.reply_positions = torch.tensor(positions, dtype=torch.long)
