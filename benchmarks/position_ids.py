"""Position-id cost, side by side in one process.

1. omnitrain's TMRope.rope_index vs transformers' Qwen2.5-Omni get_rope_index on a
   batch of 8 rows of ~32k tokens, each a long video with its audio track interleaved
   (plus text and an image); outputs are checked equal before timing.
2. The training path's id computation (TMRope.position_ids over the layouts of a real
   demo batch) vs one demo training step (forward, backward, AdamW) on that batch.

    .venv/bin/python benchmarks/position_ids.py [--repeats 5]

Needs transformers (the dev extra) and the demo shards (omnitrain data demo data/demo).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from omnitrain.positions.layout import VideoSeg
from omnitrain_plugins.qwen_omni.tmrope import TMRope, TMRopeConfig

AUD, IMG, VID, ABOS, AEOS, VBOS, VEOS = 1, 2, 3, 4, 5, 7, 8
TOKEN_IDS = {"image": IMG, "video": VID, "audio": AUD, "vision_bos": VBOS, "audio_bos": ABOS}


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def long_batch(scheme: TMRope, rows: int = 8):
    """~32k-token rows: text, an image, a 120 s video (42x42 patches, 2 s per frame group)
    with its 120 s audio track interleaved."""
    ids, grids_img, grids_vid, seqlens, spgs = [], [], [], [], []
    for r in range(rows):
        frames = 12000 - 40 * r  # 120 s of mel frames, a little different per row
        n_audio = ((frames - 1) // 2 + 1 - 2) // 2 + 1
        video = VideoSeg((60, 21, 21), 2.0, n_audio)  # 60 frame groups of 2 s
        order = scheme.video_audio_order(video)
        body = torch.where(order, AUD, VID)
        row = torch.cat([
            torch.full((300,), 50), torch.tensor([VBOS]), torch.full((64,), IMG), torch.tensor([VEOS]),
            torch.full((200,), 51), torch.tensor([VBOS, ABOS]), body, torch.tensor([AEOS, VEOS]),
            torch.full((2000 + r,), 52),
        ])
        ids.append(row)
        grids_img.append([1, 16, 16])
        grids_vid.append([60, 42, 42])
        seqlens.append(frames)
        spgs.append(2.0)
    width = max(len(x) for x in ids)
    mask = torch.zeros(rows, width, dtype=torch.long)
    padded = torch.zeros(rows, width, dtype=torch.long)
    for r, row in enumerate(ids):
        padded[r, : len(row)] = row
        mask[r, : len(row)] = 1
    return dict(input_ids=padded, attention_mask=mask, image_grid_thw=torch.tensor(grids_img),
                video_grid_thw=torch.tensor(grids_vid), use_audio_in_video=True,
                audio_seqlens=torch.tensor(seqlens), second_per_grids=torch.tensor(spgs))


def reference_model():
    from transformers import Qwen2_5OmniThinkerConfig, Qwen2_5OmniThinkerForConditionalGeneration

    cfg = Qwen2_5OmniThinkerConfig(
        audio_config=dict(d_model=16, encoder_attention_heads=2, encoder_ffn_dim=16, encoder_layers=1,
                          num_mel_bins=16, n_window=4, output_dim=16),
        vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2,
                           spatial_merge_size=2, out_hidden_size=16, fullatt_block_indexes=[0]),
        text_config=dict(vocab_size=100, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1),
        audio_token_index=AUD, image_token_index=IMG, video_token_index=VID, audio_start_token_id=ABOS,
        audio_end_token_id=AEOS, vision_start_token_id=VBOS, vision_end_token_id=VEOS,
        position_id_per_seconds=25, seconds_per_chunk=2,
    )
    return Qwen2_5OmniThinkerForConditionalGeneration(cfg).eval()


def compare_rope_index(repeats: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    scheme = TMRope(TMRopeConfig())
    kwargs = long_batch(scheme)
    ref = reference_model()
    scheme.rope_index(**kwargs, token_ids=TOKEN_IDS)  # warm up
    t_ours, (ids, deltas) = timed(lambda: scheme.rope_index(**kwargs, token_ids=TOKEN_IDS), repeats)
    t_ref, (ref_ids, ref_deltas) = timed(lambda: ref.get_rope_index(**kwargs), repeats)
    assert torch.equal(ids, ref_ids) and torch.equal(deltas.view(-1), ref_deltas.view(-1))
    return {"threads": threads, "tokens_per_row": int(kwargs["attention_mask"].sum(1).float().mean()), "rows": 8,
            "omnitrain_s": t_ours, "transformers_s": t_ref, "speedup": t_ref / t_ours}


def demo_examples(cfg, n: int):
    """The first ``n`` samples of the first demo shard, built as training builds them."""
    import glob
    import tarfile

    from omnitrain.data.sample_builder import SampleBuilder

    builder = SampleBuilder.from_config(cfg)
    shard = sorted(glob.glob(cfg.data.train_shards))[0]
    members: dict[str, dict[str, bytes]] = {}
    with tarfile.open(shard) as tar:
        for m in tar:
            key, name = m.name.split(".", 1)
            members.setdefault(key, {})[name] = tar.extractfile(m).read()
    keys = list(members)[:n]
    return [builder.build(json.loads(members[k]["json"]), members[k].__getitem__, k) for k in keys]


def training_path_share(repeats: int) -> dict:
    from omnitrain.data.collate import collate
    from omnitrain.run_config import compose_config
    from omnitrain.training.stages.module import OmniModule

    cfg = compose_config(["recipe=demo"])
    torch.manual_seed(0)
    examples = demo_examples(cfg, cfg.data.batch_size)
    batch = collate(examples, pad_id=256)
    scheme = TMRope(TMRopeConfig())
    layouts = [e.layout for e in examples]
    t_ids, _ = timed(lambda: [scheme.position_ids(lay) for lay in layouts], repeats * 4)
    module = OmniModule(cfg)
    module.configure_model()
    opt = torch.optim.AdamW(module.model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad()
        module.model(batch)["loss"].backward()
        opt.step()

    step()  # warm up
    t_step, _ = timed(step, repeats)
    return {"batch": len(examples), "tokens": batch.num_tokens, "ids_s": t_ids, "step_s": t_step,
            "share_percent": 100 * t_ids / t_step}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    # ids are computed in data-loader workers, which PyTorch runs with one thread
    result = {"rope_index": [compare_rope_index(args.repeats, 1), compare_rope_index(args.repeats, 2)]}
    torch.set_num_threads(2)
    result["training_path"] = training_path_share(args.repeats)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
