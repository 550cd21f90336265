"""``codec=hf_audio`` / ``vocoder=hf_audio``: tiny random Mimi, DAC and EnCodec models written
by ``save_pretrained`` encode and decode through omnitrain exactly as through transformers, on
espeak speech; their rates and code groups are what their configs say; a folder that is
missing, has no config.json or holds another model fails clearly; and a Qwen3 Talker trains on
Mimi's code groups with no DiT, the codec's own decoder speaking for it."""

from __future__ import annotations

import csv
import io
import json
import math
import pickle
import shutil
import tarfile

import numpy as np
import pytest
import soundfile as sf
import torch
import transformers

from omnitrain.cli import main
from omnitrain.config.validate import ConfigError
from omnitrain.inference.chunked_codes import ChunkedCodes
from omnitrain.plugin_loading import load_plugins
from omnitrain.registry import build
from omnitrain.run_config import compose_config

pytestmark = pytest.mark.slow
load_plugins()  # the built-ins, as `omnitrain` loads them

RATE, HOP = 16000, 320  # every tiny model: 50 frames a second at 16 kHz
TINY = {
    "mimi": (transformers.MimiConfig, dict(
        sampling_rate=RATE, upsampling_ratios=[8, 5, 4], hidden_size=16, num_filters=4, codebook_size=64,
        codebook_dim=8, vector_quantization_hidden_dimension=8, num_quantizers=4, num_semantic_quantizers=1,
        upsample_groups=16, num_hidden_layers=1, intermediate_size=32, num_attention_heads=2,
        num_key_value_heads=2, sliding_window=16, max_position_embeddings=1000)),  # SEANet 160 x 2 (downsample)
    "dac": (transformers.DacConfig, dict(
        sampling_rate=RATE, downsampling_ratios=[2, 4, 5, 8], encoder_hidden_size=4, decoder_hidden_size=32,
        n_codebooks=3, codebook_size=64, codebook_dim=4)),
    "encodec": (transformers.EncodecConfig, dict(
        sampling_rate=RATE, upsampling_ratios=[8, 5, 4, 2], hidden_size=16, num_filters=4, codebook_size=64,
        num_lstm_layers=1, target_bandwidths=[0.6, 1.2, 2.4])),  # 6 bits x 50 frames/s: 0.3 kbps a quantizer
}
# (family, codec overrides, code groups they give)
CHOICES = [("mimi", {}, 4), ("mimi", {"num_quantizers": 2}, 2), ("dac", {}, 3), ("dac", {"num_quantizers": 2}, 2),
           ("encodec", {}, 2), ("encodec", {"bandwidth": 1.2}, 4)]


def _random_codebooks(name: str, model, wave: torch.Tensor):
    """Codebooks that spread the speech's frames over many codes (transformers starts RVQ
    codebooks at zero: every code would be 0): random vectors for Mimi and DAC; EnCodec's
    latents sit in a narrow band, so each of its codebooks takes random frames of what the
    groups before it left of the speech's latents."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        if name != "encodec":
            for key, t in model.named_buffers():
                if key.endswith(("embed", "embed_sum")):
                    t.copy_(torch.randn(t.shape, generator=gen))
            return model
        residual = model.encoder(wave[None, None])
        for layer in model.quantizer.layers:
            frames = residual[0].T[torch.randint(0, residual.shape[-1], (64,), generator=gen)]
            layer.codebook.embed.copy_(frames + 1e-3 * torch.randn(frames.shape, generator=gen))
            residual = residual - layer.decode(layer.encode(residual))
    return model


@pytest.fixture(scope="module")
def speech() -> torch.Tensor:
    """About 1.5 s of espeak speech at 16 kHz, cut to whole frames."""
    from tests.evaluation.espeak import VOICES, speak

    wave = speak("the quick brown fox jumps", VOICES[0], rate=RATE)
    return wave[: wave.numel() // HOP * HOP]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, speech) -> dict:
    """model_type -> a folder written by save_pretrained (what a user downloads or trains once)."""
    out = {}
    for name, (config_cls, kwargs) in TINY.items():
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = getattr(transformers, config_cls.__name__.replace("Config", "Model"))(config_cls(**kwargs))
        out[name] = tmp_path_factory.mktemp(name)
        _random_codebooks(name, model.eval(), speech).save_pretrained(out[name])
    return out


def reference(folder, family, wave, **options):
    """transformers' own codes (batch, groups, frames) and waveform, no omnitrain code."""
    cls = getattr(transformers, {"mimi": "MimiModel", "dac": "DacModel", "encodec": "EncodecModel"}[family])
    model = cls.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        x = wave[None, None]
        if family == "mimi":
            codes = model.encode(x, num_quantizers=options.get("num_quantizers")).audio_codes
            return codes, model.decode(codes).audio_values[0, 0]
        if family == "dac":
            codes = model.encode(x, n_quantizers=options.get("num_quantizers")).audio_codes
            return codes, model.decode(audio_codes=codes).audio_values[0]
        out = model.encode(x, bandwidth=options.get("bandwidth"))
        return out.audio_codes[0], model.decode(out.audio_codes, out.audio_scales).audio_values[0, 0]


def codec_of(folder, **options):
    return build("codec", {"name": "hf_audio", "path": str(folder), **options})


@pytest.mark.parametrize("family,options,groups", CHOICES, ids=lambda x: str(x))
def test_codes_and_waves_are_transformers_own(folders, speech, family, options, groups):
    codec = codec_of(folders[family], **options)
    assert (codec.vocab_size, codec.sample_rate, codec.frame_rate, codec.groups) == (64, RATE, RATE / HOP, groups)
    codes = codec.encode(speech)
    ref_codes, ref_wave = reference(folders[family], family, speech, **options)
    assert codes.dtype == torch.long and codes.shape == (speech.numel() // HOP, groups)  # frame_rate is exact
    assert torch.equal(codes, ref_codes[0].T)  # a frame's groups in a row
    assert all(len(codes[:, g].unique()) > 3 for g in range(groups))  # random codebooks: the test can tell
    wave = codec.decode(codes)
    assert torch.equal(wave, ref_wave)
    copy = pickle.loads(pickle.dumps(codec))  # a data worker: no weights pickled, read again on use
    assert copy._model is None and torch.equal(copy.encode(speech), codes)


def test_the_vocoder_decodes_as_the_codec_and_streams_as_it_decodes_whole(folders, speech):
    for family in ("mimi", "dac"):
        codec = codec_of(folders[family])
        vocoder = build("vocoder", {"name": "hf_audio", "path": str(folders[family])},
                        codec_vocab_size=codec.vocab_size)
        assert list(vocoder.parameters()) == [] and vocoder.samples_per_code(vocoder.cfg) == HOP
        a, b = codec.encode(speech), codec.encode(speech[: 30 * HOP])
        codes = torch.zeros(2, len(a), codec.groups, dtype=torch.long)
        codes[0], codes[1, :30] = a, b
        mask = torch.arange(len(a))[None] < torch.tensor([[len(a)], [30]])
        wave = vocoder.decode(codes, mask)
        for row, c in enumerate((a, b)):
            alone = codec.decode(c)[: len(c) * HOP]  # DAC's decode is a few samples short of whole codes
            assert torch.equal(wave[row, : alone.numel()], alone) and not wave[row, alone.numel():].any()
        stream = ChunkedCodes(vocoder, None, chunk=6)  # the model's look-ahead held back, all before decoded
        parts = [stream.push(frame) for frame in b] + [stream.finish()]
        streamed = torch.cat(parts)
        assert streamed.shape == wave[1, : 30 * HOP].shape and sum(p.numel() for p in parts[:-1]) > 0
        assert torch.allclose(streamed, wave[1, : 30 * HOP], atol=1e-5)
    assert build("vocoder", {"name": "hf_audio", "path": str(folders["mimi"])}).right_context_codes == 0


def test_a_wrong_folder_or_choice_fails_clearly(folders, tmp_path):
    with pytest.raises(ConfigError, match="codec.path='/no/such/folder' does not exist"):
        compose_config(["codec=hf_audio", "codec.path=/no/such/folder"])
    with pytest.raises(FileNotFoundError, match=f"'{tmp_path}' has no config.json"):
        codec_of(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(ValueError, match=r"model_type='wav2vec2': hf_audio reads \['dac', 'encodec', 'mimi'\]"):
        codec_of(tmp_path)
    with pytest.raises(ValueError, match="encodes with 1 to 4 quantizers"):
        codec_of(folders["mimi"], num_quantizers=5)
    with pytest.raises(ValueError, match=r"encodes at \[0.6, 1.2, 2.4\] kbps"):
        codec_of(folders["encodec"], bandwidth=3.0)
    with pytest.raises(ConfigError, match="vocoder.path is empty"):  # alone, with a codec that has no path
        compose_config(["vocoder=hf_audio"])
    with pytest.raises(ConfigError, match="decodes at 16000 Hz .* set speech.sample_rate=16000"):
        compose_config([*model_overrides(folders["mimi"]), "speech.sample_rate=24000"])


def model_overrides(folder) -> list[str]:
    """A tiny Qwen3-Omni-style model over the codec's code groups, no DiT: the codec's decoder
    speaks (50 codes a second, each one mel frame of 20 ms)."""
    return ["recipe=smoke", "thinker=qwen3_moe", "talker=qwen3_moe", "codec=hf_audio", f"codec.path={folder}",
            "dit=none", "dit.mel_frames_per_code=1", "loss.flow=0", "vocoder=hf_audio"]


def test_a_talker_trains_on_the_codecs_groups_and_speaks_through_its_decoder(folders, tmp_path):
    data, run, bundle, folder = tmp_path / "data", tmp_path / "run", tmp_path / "bundle", tmp_path / "mimi"
    shutil.copytree(folders["mimi"], folder)
    overrides = model_overrides(folder)
    assert main(["data", "demo", str(data), "--train", "8", "--val", "4", "--heldout", "0", "--per-shard", "8",
                 *overrides]) == 0
    codec = codec_of(folder)
    with tarfile.open(next(data.glob("train-*.tar"))) as tar:  # the shards hold the codec's codes of the reply
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    key = next(n.split(".", 1)[0] for n in members if n.endswith(".reply.codec.npy"))
    wave, rate = sf.read(io.BytesIO(members[f"{key}.reply.wav"]), dtype="float32")
    codes = np.load(io.BytesIO(members[f"{key}.reply.codec.npy"]))
    assert rate == RATE and codes.shape == (len(wave) // HOP, 4)
    assert np.array_equal(codes, codec.encode(torch.from_numpy(wave)).numpy())

    assert main(["train", *overrides, f"run_dir={run}", "logger=csv", f"data.train_shards={data}/train-*.tar",
                 f"data.val_shards={data}/val-*.tar", "trainer.max_steps=2", "trainer.log_every_n_steps=1",
                 "trainer.limit_val_batches=0", "checkpoint.every_n_steps=2"]) == 0
    with open(run / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/loss")]
    assert len(rows) == 2
    for name in ("train/codec", "train/residual_codes"):  # group 0 (the Talker), groups 1-3 (its code predictor)
        values = [float(r[name]) for r in rows]  # untrained: near ln(codebook size), as a fresh head should
        assert all(math.isfinite(v) and abs(v - math.log(64)) < 0.3 * math.log(64) for v in values), (name, values)

    assert main(["export", str(run / "checkpoints" / "last.ckpt"), str(bundle)]) == 0
    shutil.rmtree(folder)  # the bundle carries the codec's folder, and the vocoder reads that copy
    whole, streamed = tmp_path / "whole.wav", tmp_path / "streamed.wav"
    for out, extra in ((whole, []), (streamed, ["--stream"])):
        assert main(["generate", str(bundle), "--text", "what is 3 plus 4?", "--speech", str(out), *extra]) == 0
    a, rate = sf.read(str(whole), dtype="float32")
    b, _ = sf.read(str(streamed), dtype="float32")
    assert rate == RATE and len(a) > 0 and len(a) % HOP == 0  # whole codes through Mimi's own decoder
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-4)  # Mimi is causal: streamed as whole
