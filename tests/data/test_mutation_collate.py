"""``collate`` on small hand-made examples, every output tensor worked out by hand: padding,
packed speech rows, audio and image items, and the empty fields of a text-only batch
(issue 26: mutation survivors). Fast: no demo data, no model."""

from __future__ import annotations

import torch

from omnitrain.data.batch import BatchSizes
from omnitrain.data.collate import collate, pad_stack
from omnitrain.data.sample_builder import Example
from omnitrain.tokens import IGNORE_INDEX

PAD = 99
N_MELS = 2


def ex(key, ids, reply=None, codes=None, ref_frames=None, audio=(), grids=()):
    """ids: the tokens; labels are the ids; position ids count 0.. in all 3 rows."""
    n = len(ids)
    speech = {}
    if codes is not None:
        speech = dict(reply_positions=torch.tensor(reply), codec_tokens=torch.tensor(codes),
                      speech_mel=torch.full((2 * len(codes), N_MELS), float(key[-1])), speaker=int(key[-1]),
                      reference_mel=None if ref_frames is None else torch.ones(ref_frames, N_MELS))
    return Example(key=key, input_ids=torch.tensor(ids), position_ids=torch.arange(n).expand(3, n).clone(),
                   labels=torch.tensor(ids), layout=[], audio_features=[torch.ones(N_MELS, f) for f in audio],
                   vision_patches=[torch.ones(t * h * w, 4) for t, h, w in grids], vision_grids=list(grids),
                   **speech)


def test_pad_stack_pads_the_end_of_the_chosen_dim():
    assert pad_stack([torch.tensor([1, 2]), torch.tensor([3])], 9).tolist() == [[1, 2], [3, 9]]
    rows = pad_stack([torch.tensor([[1, 2], [3, 4]]), torch.tensor([[5, 6]])], -1)  # dim 0 of 2-D
    assert rows.tolist() == [[[1, 2], [3, 4]], [[5, 6], [-1, -1]]]
    frames = pad_stack([torch.tensor([[1, 2, 3], [4, 5, 6]]), torch.tensor([[7], [8]])], 0, dim=1)
    assert frames.tolist() == [[[1, 2, 3], [4, 5, 6]], [[7, 0, 0], [8, 0, 0]]]


def test_text_only_batch_has_no_media_or_speech_items():
    """0 items in every media and speech field: a stray placeholder item would send garbage
    through an encoder or the Talker."""
    batch = collate([ex("t1", [1, 2, 3])], PAD)
    for name in ("audio_features", "audio_lengths", "vision_patches", "vision_grids", "speech_rows",
                 "reply_positions", "reply_mask", "codec_tokens", "codec_mask", "speech_mel", "speaker_ids",
                 "reference_lengths", "reference_mel"):
        assert getattr(batch, name).shape[0] == 0, name
    assert batch.vision_grids.shape == (0, 3)
    assert batch.sizes == BatchSizes([3], [])


def packed_speech_batch():
    """Lengths 4, 3, 2 into rows of 6, first fit decreasing: rows [ex0, ex2] and [ex1]."""
    exs = [ex("s0", [1, 2, 3, 4], reply=[2, 3], codes=[7, 8, 9], ref_frames=5),
           ex("s1", [5, 6, 7], reply=[1, 2], codes=[6, 6]),
           ex("s2", [8, 9], reply=[1], codes=[5])]
    return collate(exs, PAD, pack_length=6)


def test_packed_rows_keep_each_sample_apart():
    batch = packed_speech_batch()
    assert batch.keys == ["s0", "s2", "s1"]
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 8, 9], [5, 6, 7, PAD, PAD, PAD]]
    assert batch.doc_ids.tolist() == [[1, 1, 1, 1, 2, 2], [1, 1, 1, 0, 0, 0]]
    assert batch.position_ids.shape == (3, 2, 6)
    assert batch.position_ids[0].tolist() == [[0, 1, 2, 3, 0, 1], [0, 1, 2, 0, 0, 0]]
    assert batch.labels.tolist() == [[1, 2, 3, 4, 8, 9], [5, 6, 7] + [IGNORE_INDEX] * 3]


def test_packed_spoken_replies_point_into_their_rows():
    """s2 sits after s0's 4 tokens: its reply position 1 becomes 5 in the row. Padding is 0
    and masked out."""
    batch = packed_speech_batch()
    assert batch.speech_rows.tolist() == [0, 0, 1]
    assert batch.reply_positions.tolist() == [[2, 3], [5, 0], [1, 2]]
    assert batch.reply_mask.tolist() == [[True, True], [True, False], [True, True]]
    assert batch.codec_tokens.tolist() == [[7, 8, 9], [5, 0, 0], [6, 6, 0]]
    assert batch.codec_mask.tolist() == [[True] * 3, [True, False, False], [True, True, False]]
    assert batch.speech_mel.shape == (3, 6, N_MELS)
    assert batch.speech_mel[:, :, 0].tolist() == [[0.0] * 6, [2, 2, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0]]
    assert batch.speaker_ids.tolist() == [0, 2, 1]
    # (prompt tokens, reply tokens, codes) per reply, in the same order
    assert batch.sizes == BatchSizes([4, 2, 3], [(2, 2, 3), (1, 1, 1), (1, 2, 2)])


def test_a_reference_recording_is_padded_and_its_length_kept():
    batch = packed_speech_batch()
    assert batch.reference_lengths.tolist() == [5, 0, 0]
    assert batch.reference_mel.shape == (3, 5, N_MELS)
    assert batch.reference_mel.sum(dim=(1, 2)).tolist() == [10.0, 0.0, 0.0]


def test_replies_without_references_get_one_silent_frame():
    """No reference anywhere: one zero frame each (length 0), never a 0-frame tensor."""
    batch = collate([ex("s1", [5, 6, 7], reply=[1, 2], codes=[6, 6])], PAD)
    assert batch.reference_lengths.tolist() == [0]
    assert batch.reference_mel.tolist() == [[[0.0, 0.0]]]


def test_audio_clips_are_padded_in_frames_and_their_lengths_kept():
    batch = collate([ex("a1", [1, 2], audio=[5]), ex("a2", [3], audio=[3, 1])], PAD)
    assert batch.audio_features.shape == (3, N_MELS, 5)
    assert batch.audio_lengths.tolist() == [5, 3, 1]
    assert batch.audio_features.sum(dim=(1, 2)).tolist() == [10.0, 6.0, 2.0]


def test_image_grids_are_one_row_each():
    batch = collate([ex("v1", [1], grids=[(1, 2, 2)]), ex("v2", [2], grids=[(2, 2, 4)])], PAD)
    assert batch.vision_grids.tolist() == [[1, 2, 2], [2, 2, 4]]
    assert batch.vision_patches.shape == (4 + 16, 4)
