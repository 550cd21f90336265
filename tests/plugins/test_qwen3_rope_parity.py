"""Qwen3-Omni's position ids (``position=qwen3_tmrope``) against transformers'
``get_rope_index`` of ``qwen3_omni_moe``: a row with text, an audio clip, an image and a
video with its own audio (merged on time, token by token), a padded row, and videos
without audio at two frame rates. The ids and the decode deltas are equal."""

from __future__ import annotations

import types

import pytest
import torch

from omnitrain_plugins.qwen3_omni.aut_audio import aut_token_count
from omnitrain_plugins.qwen3_omni.rope import Qwen3Rope, Qwen3RopeConfig

pytest.importorskip("transformers")
from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe as hf  # noqa: E402

VBOS, VEOS, ABOS, AEOS, IMAGE, VIDEO, AUDIO = 90, 91, 92, 93, 94, 95, 96
TOKENS = {"image": IMAGE, "video": VIDEO, "audio": AUDIO, "vision_bos": VBOS, "audio_bos": ABOS}


def reference():
    """transformers' method on a stand-in model: only the config values it reads."""
    cls = hf.Qwen3OmniMoePreTrainedModelForConditionalGeneration
    config = types.SimpleNamespace(image_token_id=IMAGE, video_token_id=VIDEO, audio_token_id=AUDIO,
                                   vision_start_token_id=VBOS, audio_start_token_id=ABOS, position_id_per_seconds=13,
                                   audio_config=types.SimpleNamespace(n_window=50))
    model = types.SimpleNamespace(spatial_merge_size=2, config=config)
    model.get_llm_pos_ids_for_vision = types.MethodType(cls.get_llm_pos_ids_for_vision, model)
    return types.MethodType(cls.get_rope_index, model)


def text(n, seed):
    return torch.randint(0, 80, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def audio(frames):
    return [ABOS] + [AUDIO] * aut_token_count(frames) + [AEOS]


def image(t, h, w):
    return [VBOS] + [IMAGE] * (t * h * w // 4) + [VEOS]


def video(t, h, w, audio_frames=None):
    body = [VIDEO] * (t * h * w // 4)
    if audio_frames is None:
        return [VBOS] + body + [VEOS]
    return [VBOS, ABOS] + body + [AUDIO] * aut_token_count(audio_frames) + [AEOS, VEOS]  # order unread by both


def rows_tensor(rows):
    longest = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), longest, dtype=torch.long)
    mask = torch.zeros(len(rows), longest, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    return ids, mask


@pytest.mark.parametrize("audio_in_video", [True, False])
def test_ids_and_deltas_equal_transformers(audio_in_video):
    ours = Qwen3Rope(Qwen3RopeConfig())
    if audio_in_video:
        # the third video: one wide frame group and a short clip, so the audio's tail (the piece laid out
        # last) holds smaller ids than the frame's columns: the closing ids follow the tail
        rows = [text(3, 0) + audio(250) + text(2, 1) + image(1, 4, 6) + text(4, 2) + video(3, 4, 4, 300) + text(3, 3),
                text(2, 4) + video(2, 2, 4, 120) + text(5, 5), text(1, 10) + video(1, 4, 32, 40) + text(2, 11)]
        images, videos = torch.tensor([[1, 4, 6]]), torch.tensor([[3, 4, 4], [2, 2, 4], [1, 4, 32]])
        seqlens, spg = torch.tensor([250, 300, 120, 40]), torch.tensor([1.0, 2.0, 1.0])
    else:
        rows = [text(4, 6) + video(3, 4, 4) + text(2, 7) + video(4, 2, 2) + text(3, 8), text(6, 9) + audio(90)]
        images, videos = None, torch.tensor([[3, 4, 4], [4, 2, 2]])
        seqlens, spg = torch.tensor([90]), torch.tensor([1.0, 2.0])
    ids, mask = rows_tensor(rows)
    want, want_delta = reference()(ids, images, videos, mask, audio_in_video, seqlens, spg)
    got, got_delta = ours.rope_index(ids, images, videos, mask, audio_in_video, seqlens, spg, token_ids=TOKENS)
    real = mask.bool()
    assert torch.equal(got[:, real].long(), want[:, real].long())
    assert torch.equal(got_delta.long().view(-1), want_delta.long().view(-1))
