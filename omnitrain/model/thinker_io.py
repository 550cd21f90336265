"""What goes into the Thinker besides its embeddings, and which of its states the Talker
reads: the encoders' inner levels as side inputs (``SideInputs``), and the states the
Talker's ``ContextSpec`` names."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from omnitrain.slots import ContextSpec, EncoderOutput, SideInputs, Thinker, ThinkerOutput


@dataclass
class ThinkerInputs:
    """The Thinker's inputs for a batch: embeddings (media placeholders replaced), side
    inputs (None when no encoder returns levels) and the encoders' auxiliary losses."""

    embeds: Tensor
    side: SideInputs | None = None
    aux_losses: dict[str, Tensor] = field(default_factory=dict)

    def thinker_kwargs(self) -> dict:
        """The optional keyword arguments of ``Thinker.forward``/``step`` these inputs need."""
        return {} if self.side is None else {"side_inputs": self.side}


def side_inputs(embeds: Tensor, parts: dict[str, tuple[Tensor, EncoderOutput]], thinker: Thinker) -> SideInputs | None:
    """Side inputs from the encoders that return levels: ``parts`` maps an encoder slot to
    (its placeholder mask (B, L), its output). Each level's features in token order."""
    leveled = {slot: part for slot, part in parts.items() if part[1].levels}
    if not leveled:
        return None
    if not thinker.takes_side_inputs:
        raise ValueError(f"{' and '.join(leveled)} return inner levels for the Thinker (EncoderOutput.levels), but "
                         f"thinker {type(thinker).__name__} takes no side inputs (Thinker.takes_side_inputs): choose "
                         f"a Thinker that does, or an encoder that returns its tokens only")
    counts = {slot: len(out.levels) for slot, (_, out) in leveled.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"the encoders return different numbers of levels {counts}: the Thinker adds level k "
                         f"after its layer k, so they must agree")
    if len(leveled) == 1:
        mask, out = next(iter(leveled.values()))
        return SideInputs(mask, list(out.levels))
    masks = [mask for mask, _ in leveled.values()]
    union = masks[0]
    for mask in masks[1:]:
        union = union | mask
    features = []
    for k in range(next(iter(counts.values()))):  # both encoders' level k, in token order
        full = embeds.new_zeros(embeds.shape)
        for mask, out in leveled.values():
            full = full.masked_scatter(mask[..., None], out.levels[k].to(full.dtype))
        features.append(full[union])
    return SideInputs(union, features)


def context_states(thinker: ThinkerOutput, spec: ContextSpec) -> Tensor:
    """The Thinker states the Talker reads (``spec.layer``)."""
    if spec.layer < 0:
        return thinker.hidden
    if spec.layer not in thinker.layers:
        raise ValueError(f"the Talker reads the Thinker's layer {spec.layer} (ContextSpec.layer) but the Thinker "
                         f"returned layers {sorted(thinker.layers)}: its forward must fill ThinkerOutput.layers "
                         f"for output_layers")
    return thinker.layers[spec.layer]
