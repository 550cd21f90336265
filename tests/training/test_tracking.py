"""Tracking: gradient norms, data wait, validation replies as files and media, the run-wide
progress bar, log lines printed once, TensorBoard, and `summary`'s best direction.

One real 4-step run (2 pseudo-epochs of 2 batches, validation every 2 steps) in a
subprocess, as a user starts it: its output is what a user sees.
"""

from __future__ import annotations

import csv
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from PIL import Image

from omnitrain.cli import main
from omnitrain.run_config import compose_config
from omnitrain.run_summary import better, summarise
from omnitrain.training.validation.tracking_media import mel_image
from omnitrain.training.validation.tracking_samples import (
    split_conversation,
    validation_prompts,
)
from tests.helpers import smoke_overrides

ROOT = Path(__file__).resolve().parents[2]
SLOTS = ("audio_encoder", "vision_encoder", "thinker", "talker", "dit")


@pytest.fixture(scope="module")
def tracked(demo_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("tracked") / "run"
    args = smoke_overrides(demo_dir, run, "trainer.max_steps=4", "trainer.val_check_interval=2",
                           "data.epoch_batches=2", "trainer.log_every_n_steps=1")
    args = [a for a in args if a != "logger=csv"] + ["logger=offline_tensorboard"]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "omnitrain", "train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, proc.stdout + proc.stderr


def _rows(run: Path) -> list[dict]:
    with open(run / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_grad_norms_are_finite_and_slots_add_up_in_squares(tracked):
    run, _ = tracked
    rows = [r for r in _rows(run) if r.get("grad/norm")]
    assert len(rows) == 4  # every step is a log step here
    for r in rows:
        total = float(r["grad/norm"])
        slots = [float(r[f"grad/norm_{s}"]) for s in SLOTS]
        assert math.isfinite(total) and total > 0 and all(math.isfinite(v) for v in slots)
        assert math.isclose(math.sqrt(sum(v * v for v in slots)), total, rel_tol=6e-7)  # measured 6.0e-8


def test_learning_rate_throughput_and_data_wait_are_logged(tracked):
    run, _ = tracked
    rows = _rows(run)
    for name in ("lr-AdamW/thinker", "perf/tokens_per_s", "perf/samples_per_s", "perf/data_wait"):
        assert any(r.get(name) for r in rows), name
    waits = [float(r["perf/data_wait"]) for r in rows if r.get("perf/data_wait")]
    assert all(0.0 <= w <= 1.0 for w in waits) and any(w > 0 for w in waits)
    logged = [r for r in rows if r.get("perf/rank_tokens_per_s_min")]
    assert logged and all(  # one process: the slowest and fastest rank are this one, all of the rate
        float(r["perf/rank_tokens_per_s_min"]) == float(r["perf/rank_tokens_per_s_max"]) > 0
        and float(r["perf/rank_tokens_per_s_max"]) == float(r["perf/tokens_per_s"])  # measured: equal
        for r in logged)
    # one sample per row, padded to the longest: the demo's mixed lengths leave padding
    assert all(0.0 < float(r["data/padding_waste"]) < 1.0 for r in logged)


def test_each_validation_writes_replies_audio_and_mel(tracked):
    run, _ = tracked
    for step in ("step-000002", "step-000004"):
        folder = run / "samples" / step
        text = (folder / "replies.md").read_text()
        assert text.count("**generated:**") == 2 and "**expected:** " in text and "user: " in text
        for i in range(2):
            info = sf.info(str(folder / f"reply-{i}.wav"))
            assert info.samplerate == 16000 and info.frames > 0
            with Image.open(folder / f"reply-{i}-mel.png") as img:
                assert img.format == "PNG" and img.width >= 240 and img.height >= 160
        assert sf.info(str(folder / "true_codes.wav")).frames > 0  # the DiT on the true codes, as before


def test_wandb_offline_run_holds_the_table_audio_and_images(tracked):
    run, _ = tracked
    media = [p.relative_to(run) for p in run.glob("wandb/offline-run-*/files/media/**/*") if p.is_file()]
    names = [str(p) for p in media]
    assert any("table/samples/replies" in n for n in names), names
    assert sum("audio/samples/reply_audio" in n for n in names) == 4, names  # 2 replies x 2 validations
    assert sum("images/samples/reply_mel" in n for n in names) == 4, names
    assert any("audio/samples/speech" in n for n in names), names


def test_tensorboard_event_file_holds_scalars_and_media(tracked):
    run, _ = tracked
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    data = events[0].read_bytes()
    for tag in (b"grad/norm", b"perf/data_wait", b"samples/reply_0_mel", b"samples/reply_1_audio", b"samples/speech"):
        assert tag in data, tag


def test_lightning_lines_print_once(tracked):
    _, out = tracked
    assert out.count("Seed set to") == 1, out[:2000]
    assert out.count("GPU available:") == 1, out[:2000]


def test_progress_bar_counts_the_run_not_the_pseudo_epoch(tracked):
    _, out = tracked
    totals = {int(t) for t in re.findall(r"Epoch \d+:\s+\d+%\|[^|]*\|\s*\d+/(\d+)", out)}
    assert totals == {4}, totals  # max_steps, though an epoch is 2 batches
    assert re.search(r"Epoch 1:\s+100%\|[^|]*\|\s*4/4", out)  # the second epoch continues the count


def test_summary_best_follows_each_metric_direction(tracked, capsys):
    run, _ = tracked
    rows = {r.name: r for r in summarise(run)}
    speed = [float(r["perf/samples_per_s"]) for r in _rows(run) if r.get("perf/samples_per_s")]
    loss = [float(r["train/loss"]) for r in _rows(run) if r.get("train/loss")]
    assert rows["perf/samples_per_s"].best == max(speed) and rows["perf/samples_per_s"].better == "high"
    assert rows["train/loss"].best == min(loss) and rows["train/loss"].better == "low"
    assert math.isnan(rows["grad/norm"].best) and rows["grad/norm"].better is None
    assert main(["summary", str(run)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("perf/samples_per_s"))
    assert f"{max(speed):.4g}" in line and "high" in line


@pytest.mark.parametrize(("name", "direction"), [
    ("perf/tokens_per_s", "high"), ("perf/mfu", "high"), ("val/codec_acc", "high"), ("val/codec_gen_acc", "high"),
    ("train/loss", "low"), ("val/mel_l1", "low"), ("train/text", "low"), ("perf/data_wait", "low"),
    ("perf/max_memory_gib", "low"), ("lr-AdamW/thinker", None), ("grad/norm_talker", None),
])
def test_metric_directions(name, direction):
    assert better(name) == direction


def test_mel_image_puts_low_frequencies_at_the_bottom():
    mel = torch.zeros(20, 8)
    mel[:, 0] = 1.0  # energy in the lowest bin only
    img = mel_image(mel)
    bottom, top = img.getpixel((img.width // 2, img.height - 1)), img.getpixel((img.width // 2, 0))
    assert sum(bottom) > sum(top) + 300


def test_prompts_are_the_validation_conversations_cut_before_the_reply(demo_dir, tmp_path):
    cfg = compose_config(smoke_overrides(demo_dir, tmp_path / "run"))
    prompts = validation_prompts(cfg, 3)
    assert len(prompts) == 3 and all(p.text.startswith("user:") and p.expected for p in prompts)
    conv = {"turns": [{"role": "user", "content": [{"text": "hi"}]},
                      {"role": "assistant", "content": [{"text": "a"}]},
                      {"role": "user", "content": [{"audio": "x.wav"}, {"text": "again"}]},
                      {"role": "assistant", "content": [{"text": "b"}]}]}
    prompt, expected = split_conversation(conv)
    assert expected == "b" and len(prompt["turns"]) == 3


def test_a_resumed_run_continues_the_bar_from_its_step(demo_dir, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}

    def train(*extra: str) -> str:
        args = smoke_overrides(demo_dir, run, "data.epoch_batches=2", "trainer.limit_val_batches=0",
                               "logger.samples=0", *extra)
        proc = subprocess.run([sys.executable, "-m", "omnitrain", "train", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    train("trainer.max_steps=2", "checkpoint.every_n_steps=2")
    out = train("trainer.max_steps=4", "resume=last")
    counts = re.findall(r"Epoch \d+:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)", out)
    assert counts and {int(total) for _, total in counts} == {4}
    assert int(counts[0][0]) == 2 and int(counts[-1][0]) == 4  # it starts at the resumed step


def test_a_reply_too_short_for_the_vocoder_keeps_its_text_and_mel(demo_dir, tmp_path):
    """Griffin-Lim cannot take 2 mel frames (its STFT padding is longer): the sample says
    so instead of stopping the training run."""
    from omnitrain.data.sample_builder import SampleBuilder
    from omnitrain.inference.replier import Replier
    from omnitrain.model.omni_model import OmniModel
    from omnitrain.training.validation.tracking_media import SampleRow, StepSamples, write_files

    cfg = compose_config(smoke_overrides(demo_dir, tmp_path / "run", "generate.max_codec_tokens=1"))
    torch.manual_seed(0)
    prompt = validation_prompts(cfg, 1)[0]
    replier = Replier(OmniModel(cfg).eval(), cfg.generate, SampleBuilder.from_config(cfg), keep_speech_errors=True)
    reply = replier.replies([prompt.example], [replier.condition()])[0]
    assert reply.codec_tokens.numel() == 1 and reply.wave.numel() == 0 and reply.mel.shape[0] > 0
    assert "the vocoder failed on" in reply.speech_error
    row = SampleRow(prompt.key, prompt.text, prompt.expected, reply.text, reply.wave, reply.mel, reply.speech_error)
    written = write_files(tmp_path / "step", StepSamples(1, 16000, [row]))
    assert written["wav"] == [] and len(written["png"]) == 1
    assert "audio: none (the vocoder failed on" in (tmp_path / "step" / "replies.md").read_text()


def test_grad_norms_under_deepspeed_gradient_accumulation(demo_dir, tmp_path):
    """DeepSpeed accumulates micro-batches itself; its gradients exist only at the
    boundary, where the norm is taken (every micro-step raised before). The norms are
    those of the same run accumulated by Lightning (one process, fp32)."""

    def norms(strategy: str) -> dict[int, dict[str, float]]:
        run = tmp_path / strategy
        args = smoke_overrides(demo_dir, run, f"strategy={strategy}", "trainer.accumulate_grad_batches=2",
                               "trainer.max_steps=2", "trainer.log_every_n_steps=1", "trainer.limit_val_batches=0")
        assert main(["train", *args]) == 0
        with open(run / "csv" / "metrics.csv") as f:
            return {int(r["step"]): {k: float(v) for k, v in r.items() if k.startswith("grad/norm") and v}
                    for r in csv.DictReader(f) if r.get("grad/norm")}

    want, got = norms("auto"), norms("deepspeed_zero2")
    assert sorted(got) == [0, 1] and got.keys() == want.keys()
    for step, values in got.items():
        assert values.keys() == want[step].keys() and len(values) == 6  # the total and 5 slots
        for name, value in values.items():  # the slots: measured equal; the engine's total: 7.5e-8
            rel = 7.5e-7 if name == "grad/norm" else 0.0
            assert abs(value - want[step][name]) <= rel * want[step][name], (step, name, value, want[step][name])
