"""A variable-frame-rate clip: temporal position ids follow the real frame times."""

from __future__ import annotations

import numpy as np
import torch

from omnitrain.data.build.media_writers import encode_mp4
from omnitrain.data.sample_builder import SampleBuilder
from omnitrain.features.vision import CLIP_MEAN, CLIP_STD
from omnitrain.positions.layout import VideoSeg

# frame i is on screen from TIMES[i]; brightness 10 * (i + 1) identifies it
TIMES = np.array([0.0, 0.05, 0.1, 0.9, 1.0, 1.1, 2.6, 2.7, 3.5, 3.9])


def test_temporal_ids_follow_real_frame_times(smoke_cfg):
    frames = np.stack([np.full((56, 56, 3), 10 * (i + 1), np.uint8) for i in range(len(TIMES))])
    data = encode_mp4(frames, 10.0, frame_times=TIMES)
    builder = SampleBuilder.from_config(smoke_cfg)  # video_fps 2, temporal patch 2
    conv = {"turns": [{"role": "user", "content": [{"video": "v.mp4"}, {"text": "?"}]}]}
    ex = builder.build(conv, {"v.mp4": data}.__getitem__, "vfr", for_generation=True)
    seg = next(s for s in ex.layout if isinstance(s, VideoSeg))
    assert seg.second_per_grid == 1.0  # 2 frames per group at 2 fps
    # which source frame is in each sampled slot, read back from the normalised patches
    patches = ex.vision_patches[0]
    t_groups, h, w = ex.vision_grids[0]
    red = patches.view(t_groups, h * w, 3, 2, 14 * 14)[:, 0, 0, :, 0]  # (groups, 2 frames)
    level = ((red * CLIP_STD[0] + CLIP_MEAN[0]) * 255).round()
    source = (level / 10 - 1).round().long().flatten()  # source frame index per sampled slot
    slot_times = torch.arange(source.numel()) / 2.0  # sampled at 0, 0.5, 1.0, ... s
    for slot, frame in enumerate(source.tolist()):
        shown_from = TIMES[frame]
        shown_until = TIMES[frame + 1] if frame + 1 < len(TIMES) else float("inf")
        assert shown_from <= slot_times[slot] + 1e-6 < shown_until, (slot, frame)
    # the time row of frame group t equals the real time of its first frame, at 25 ids/s
    start = ex.input_ids.tolist().index(builder.special["vision_bos"])
    time_row = ex.position_ids[0, start + 1 : start + 1 + seg.tokens].view(t_groups, -1)[:, 0]
    first_frame_time = slot_times[0::2]
    assert torch.equal(time_row - time_row[0], (first_frame_time * 25).long())
    assert set(source.tolist()) >= {0, 2, 5, 7}  # the long gaps were honoured, not frame counts
