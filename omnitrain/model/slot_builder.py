"""Each model slot built one way: its plugin from the config, with the keyword arguments its
``SlotSpec.kwargs`` names (omnitrain/slots.py), taken from what the model knows at that point.
``OmniModel`` builds every slot through here and the Hugging Face importer the ones a folder
lacks, so the two cannot drift apart."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from omnitrain.config.typed import RunConfig
from omnitrain.features.speech_mel import SpeechMel
from omnitrain.registry import build, registry
from omnitrain.slots import PositionScheme, slot_spec

#: the model slots after ``position``, in the order they are built: parameters are drawn from
#: the global generator, so this order is part of a seeded model's weights
BUILD_ORDER = ("thinker", "audio_encoder", "vision_encoder", "talker", "dit", "vocoder")


@dataclass
class SlotArguments:
    """The values a slot's constructor may ask for (``SlotSpec.kwargs``)."""

    vocab_size: int  # the tokenizer's
    codec_vocab_size: int
    position: PositionScheme
    num_speakers: int
    n_mels: int
    mel: SpeechMel
    code_groups: int = 1  # the codec's codes per frame
    thinker_hidden_size: int | None = None  # known once the Thinker is built
    speakers: tuple[str, ...] = ()  # the voices' names (speech.speakers), in index order

    @property
    def out_dim(self) -> int | None:
        """What encoders project to: the Thinker's width."""
        return self.thinker_hidden_size

    @classmethod
    def of(cls, cfg: RunConfig, vocab_size: int, codec_vocab_size: int, position: PositionScheme,
           thinker_hidden_size: int | None = None, code_groups: int = 1) -> SlotArguments:
        return cls(vocab_size, codec_vocab_size, position, len(cfg.speech.speakers), cfg.speech.n_mels,
                   SpeechMel(cfg.speech), code_groups, thinker_hidden_size, tuple(cfg.speech.speakers))


def build_slot(slot: str, cfg: RunConfig, args: SlotArguments) -> nn.Module:
    """The plugin of ``slot`` built with the arguments its spec names."""
    kwargs: dict[str, Any] = {}
    cls = registry(slot).get(cfg.slot(slot).name).cls
    for name in (*slot_spec(slot).kwargs, *cls.build_kwargs):
        if not hasattr(args, name):
            raise ValueError(f"{slot}={cfg.slot(slot).name} asks for '{name}' (build_kwargs), which no slot "
                             f"gets; ask for one of {sorted(SlotArguments.__dataclass_fields__)} or out_dim")
        value = getattr(args, name)
        if value is None:
            raise ValueError(f"building the {slot}: '{name}' is not known yet (build the thinker first)")
        kwargs[name] = value
    return build(slot, cfg.slot(slot), **kwargs)
