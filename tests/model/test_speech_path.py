"""The Talker's teacher-forced inputs for frames of several code groups are each group's
one-group inputs side by side: bos and eos are whole frames, the frame mask is shared."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from omnitrain.model.speech_path import spoken_codes, talker_inputs
from omnitrain.tokens import IGNORE_INDEX

TALKER = SimpleNamespace(bos_id=50, eos_id=51, pad_id=52)


def test_code_groups_are_one_group_inputs_side_by_side():
    torch.manual_seed(0)
    codes = torch.randint(0, 50, (3, 5, 4))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    grouped = talker_inputs(TALKER, codes, mask)
    for g in range(4):
        one = talker_inputs(TALKER, codes[..., g], mask)
        assert torch.equal(grouped[0][..., g], one[0]) and torch.equal(grouped[2][..., g], one[2])
        assert torch.equal(grouped[1], one[1])  # one mask per frame
    assert (grouped[2][1, 2] == TALKER.eos_id).all() and (grouped[2][1, 3:] == IGNORE_INDEX).all()


def test_spoken_codes_drop_frames_with_a_special_in_any_group():
    frames = torch.tensor([[1, 2], [3, 51], [4, 5], [51, 51], [52, 52]])
    assert spoken_codes(frames, 50).tolist() == [[1, 2], [4, 5]]
    assert spoken_codes(torch.tensor([7, 8, 51, 52]), 50).tolist() == [7, 8]
