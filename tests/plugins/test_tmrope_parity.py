"""TMRoPE == transformers' Qwen2.5-Omni get_rope_index, ids and deltas, on random layouts.

Layouts mix text, audio, images and videos with and without their audio track,
fractional seconds-per-grid, left and right padding. The audio-in-video token order
is built with transformers' own chunking, not ours.
"""

from __future__ import annotations

import random

import pytest
import torch

from omnitrain_plugins.qwen_omni.tmrope import TMRope, TMRopeConfig

transformers = pytest.importorskip("transformers")

AUD, IMG, VID, ABOS, AEOS, VBOS, VEOS, PAD = 1, 2, 3, 4, 5, 7, 8, 0
TOKEN_IDS = {"image": IMG, "video": VID, "audio": AUD, "vision_bos": VBOS, "audio_bos": ABOS}


@pytest.fixture(scope="module")
def reference():
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    cfg = Qwen2_5OmniThinkerConfig(
        audio_config=dict(d_model=16, encoder_attention_heads=2, encoder_ffn_dim=16, encoder_layers=1,
                          num_mel_bins=16, n_window=4, output_dim=16),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2,
                           spatial_merge_size=2, out_hidden_size=16, fullatt_block_indexes=[0]),
        text_config=dict(vocab_size=100, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1),
        audio_token_index=AUD, image_token_index=IMG, video_token_index=VID,
        audio_start_token_id=ABOS, audio_end_token_id=AEOS, vision_start_token_id=VBOS,
        vision_end_token_id=VEOS, position_id_per_seconds=25, seconds_per_chunk=2,
    )
    return Qwen2_5OmniThinkerForConditionalGeneration(cfg).eval()


def audio_tokens(frames: int) -> int:
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


def random_row(rng: random.Random, ref, use_audio_in_video: bool, items: dict) -> list[int]:
    row: list[int] = []
    for _ in range(rng.randint(0, 5)):
        kind = rng.choice(["text", "audio", "image", "video"])
        if kind == "text":
            row += [rng.randint(20, 99) for _ in range(rng.randint(1, 6))]
        elif kind == "audio":
            frames = rng.randint(4, 400)
            items["audio"].append(frames)
            row += [ABOS] + [AUD] * audio_tokens(frames) + [AEOS]
        elif kind == "image":
            grid = [1, 2 * rng.randint(1, 4), 2 * rng.randint(1, 4)]
            items["image"].append(grid)
            row += [VBOS] + [IMG] * (grid[1] * grid[2] // 4) + [VEOS]
        else:
            grid = [rng.randint(1, 7), 2 * rng.randint(1, 3), 2 * rng.randint(1, 3)]
            spg = rng.choice([0.5, 1.0, 2.0, 2.5, 3.0, round(rng.uniform(0.1, 3.5), 3), 2 / 3])
            items["video"].append(grid)
            items["spg"].append(spg)
            per_frame = grid[1] * grid[2] // 4
            if not use_audio_in_video:
                row += [VBOS] + [VID] * (grid[0] * per_frame) + [VEOS]
                continue
            frames = rng.randint(4, 600)
            items["audio"].append(frames)
            t_ids = (torch.arange(grid[0]) * torch.tensor(spg).float() * 25).long()
            v_vals = t_ids.repeat_interleave(per_frame)
            a_vals = torch.arange(audio_tokens(frames))
            vch = ref.get_chunked_index(v_vals, 50, 0)
            ach = ref.get_chunked_index(a_vals, 50, 0)
            body = []
            for j in range(max(len(vch), len(ach))):
                if j < len(vch):
                    body += [VID] * (vch[j][1] - vch[j][0])
                if j < len(ach):
                    body += [AUD] * (ach[j][1] - ach[j][0])
            row += [VBOS, ABOS] + body + [AEOS, VEOS]
    return row or [rng.randint(20, 99)]


def random_batch(rng: random.Random, ref):
    use_audio = rng.random() < 0.5
    items = {"audio": [], "image": [], "video": [], "spg": []}
    rows = [random_row(rng, ref, use_audio, items) for _ in range(rng.randint(1, 4))]
    width = max(map(len, rows)) + rng.randint(0, 3)
    left = rng.random() < 0.5
    ids, mask = [], []
    for r in rows:
        pad = [PAD] * (width - len(r))
        ids.append(pad + r if left else r + pad)
        mask.append([0] * len(pad) + [1] * len(r) if left else [1] * len(r) + [0] * len(pad))
    t = lambda x, dtype=torch.long: torch.tensor(x, dtype=dtype) if x else None  # noqa: E731
    return dict(
        input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask),
        image_grid_thw=t(items["image"]), video_grid_thw=t(items["video"]),
        use_audio_in_video=use_audio, audio_seqlens=t(items["audio"]),
        second_per_grids=t(items["spg"], torch.float32),
    ), len(rows)


def test_identical_to_transformers_on_random_layouts(reference):
    ours = TMRope(TMRopeConfig())
    rng = random.Random(1234)
    rows_checked = multimodal = 0
    while rows_checked < 1200:
        kwargs, n = random_batch(rng, reference)
        want_ids, want_delta = reference.get_rope_index(**kwargs)
        got_ids, got_delta = ours.rope_index(**kwargs, token_ids=TOKEN_IDS)
        assert torch.equal(got_ids, want_ids), kwargs
        assert torch.equal(got_delta.view(-1), want_delta.view(-1)), kwargs
        rows_checked += n
        multimodal += kwargs["image_grid_thw"] is not None or kwargs["video_grid_thw"] is not None
    assert multimodal > 150


def test_worked_example_through_rope_index():
    ids = torch.tensor([[50, 51, VBOS, IMG, IMG, IMG, IMG, VEOS, 52]])
    pos, delta = TMRope(TMRopeConfig()).rope_index(ids, image_grid_thw=torch.tensor([[1, 4, 4]]),
                                                   token_ids=TOKEN_IDS)
    assert pos[:, 0].tolist() == [[0, 1, 2, 3, 3, 3, 3, 5, 6], [0, 1, 2, 3, 3, 4, 4, 5, 6],
                                  [0, 1, 2, 3, 4, 3, 4, 5, 6]]
    assert delta.tolist() == [[-2]]


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(input_ids=[[VBOS, IMG, IMG, IMG, VEOS]], image_grid_thw=[[1, 4, 4]]), "needs 4 tokens but the ids hold 3"),
        (dict(input_ids=[[VBOS, IMG, IMG, IMG, IMG, VEOS]], image_grid_thw=[[1, 4, 4], [1, 4, 4]]),
         "2 image items were given but the ids hold 1"),
        (dict(input_ids=[[VBOS, VID, VID, VEOS]], video_grid_thw=[[2, 2, 2]], second_per_grids=[0.0]),
         "must be > 0"),
        (dict(input_ids=[[VBOS, VID, VID, VEOS]], video_grid_thw=[[2, 2, 2]], second_per_grids=[-1.0]),
         "must be > 0"),
        (dict(input_ids=[[ABOS, AUD, AUD, AEOS, VBOS, IMG, VEOS]], image_grid_thw=[[1, 2, 2]],
              audio_seqlens=[100]), "gives 25 tokens but the ids hold 2"),
    ],
)
def test_ids_that_disagree_with_the_grids_raise(kwargs, needle):
    kw = {k: torch.tensor(v) for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=needle) as err:
        TMRope(TMRopeConfig()).rope_index(**kw, token_ids=TOKEN_IDS)
    assert "row 0" in str(err.value) or "items were given" in str(err.value)
