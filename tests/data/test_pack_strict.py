"""``data pack`` on manifests from elsewhere: every file verified (spoken replies too),
``--root`` confines paths, reports never quote a file, decoder failures on truncated or
random files of every format skip their line, and a pack that keeps nothing fails."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest

from omnitrain.cli import main
from omnitrain.data.build.demo import dtmf, image_of, reply_speech, video_of
from omnitrain.data.build.media_writers import encode_audio, encode_image
from omnitrain.registry import build
from omnitrain.run_config import compose_config

SECRET = "root:x:0:0:SECRET-do-not-copy:/root:/bin/bash\n" * 40


def user(*content) -> dict:
    return {"role": "user", "content": list(content)}


def spoken(speech: str, codec: str | None = None, reference: str | None = None) -> dict:
    turn = {"role": "assistant", "content": [{"text": "1 2"}], "speech": speech}
    if codec:
        turn["codec"] = codec
    if reference:
        turn["reference"] = reference
    return turn


def line(*turns) -> str:
    return json.dumps({"turns": list(turns)})


def ogg(wave) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(wave, dtype=np.float32), 16000, format="OGG", subtype="VORBIS")
    return buf.getvalue()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """One good file of every format the packer reads, in a folder of its own."""
    root = tmp_path_factory.mktemp("media")
    rng = random.Random(0)
    codec = build("codec", compose_config([]).codec)
    files = {
        "reply.wav": encode_audio(reply_speech([1, 2], codec), 16000),
        "a.wav": encode_audio(dtmf([3, 4], rng), 16000),
        "a.flac": encode_audio(dtmf([5], rng), 16000, "FLAC"),
        "a.ogg": ogg(dtmf([6], rng)),
        "i.png": encode_image(image_of(1, 2, rng)),
        "i.jpg": encode_image(image_of(3, 4, rng), "JPEG"),
        "v.mp4": video_of(7, 8, rng)[0],
    }
    buf = io.BytesIO()
    np.save(buf, np.array([3, 3, 0, 9], dtype=np.int32))
    files["codes.npy"] = buf.getvalue()
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root, files


def pack(manifest, out, *extra, capsys=None) -> tuple[int, list[dict], str]:
    code = main(["data", "pack", str(manifest), str(out), *extra])
    report = out / "shard.skipped.jsonl"
    skipped = [json.loads(x) for x in report.read_text().splitlines()] if report.exists() else []
    printed = "".join(capsys.readouterr()) if capsys else ""
    return code, skipped, printed


def test_root_confines_paths_and_symlinks(media, tmp_path, capsys):
    root, _ = media
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.wav").write_bytes((root / "a.wav").read_bytes())
    inside = tmp_path / "data"
    inside.mkdir()
    (inside / "ok.wav").write_bytes((root / "a.wav").read_bytes())
    (inside / "link.wav").symlink_to(outside / "x.wav")
    (inside / "linkdir").symlink_to(outside)
    manifest = inside / "m.jsonl"
    manifest.write_text("\n".join([
        line(user({"audio": "ok.wav"})),
        line(user({"audio": "../outside/x.wav"})),
        line(user({"audio": str(outside / "x.wav")})),
        line(user({"audio": "link.wav"})),
        line(user({"audio": "linkdir/x.wav"})),
        line(user({"text": "hi"}), spoken("ok.wav", reference="../outside/x.wav")),
    ]) + "\n")
    code, skipped, _ = pack(manifest, tmp_path / "out", "--root", str(inside), capsys=capsys)
    assert code == 0
    assert {s["line"] for s in skipped} == {2, 3, 4, 5, 6}
    assert all(f"is outside --root {inside.resolve()}" in s["reason"] for s in skipped)
    # without --root the manifest's paths are read as written
    code, skipped, _ = pack(manifest, tmp_path / "out2", capsys=capsys)
    assert code == 0 and skipped == []


def test_reports_never_quote_a_file_and_spoken_replies_are_verified(media, tmp_path, capsys):
    root, _ = media
    (tmp_path / "secret.txt").write_text(SECRET)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join([
        line(user({"audio": "secret.txt"})),
        line(user({"image": "secret.txt"})),
        line(user({"video": "secret.txt"})),
        line(user({"video": "secret.txt", "use_audio": True})),
        line(user({"text": "hi"}), spoken("secret.txt")),
        line(user({"text": "hi"}), spoken("secret.txt", codec=str(root / "codes.npy"))),
        line(user({"text": "hi"}), spoken(str(root / "reply.wav"), codec="secret.txt")),
        line(user({"text": "hi"}), spoken(str(root / "reply.wav"), reference="secret.txt")),
        line(user({"text": "ok"}), spoken(str(root / "reply.wav"), codec=str(root / "codes.npy"))),
    ]) + "\n")
    code, skipped, printed = pack(manifest, tmp_path / "out", capsys=capsys)
    assert code == 0 and {s["line"] for s in skipped} == set(range(1, 9))
    report = (tmp_path / "out" / "shard.skipped.jsonl").read_text()
    assert "SECRET" not in report and "root:x" not in report
    assert "SECRET" not in printed and "root:x" not in printed
    assert "speech 'secret.txt'" in skipped[5]["reason"]  # verified although its codec tokens were given


def truncations(data: bytes) -> list[bytes]:
    return [data[:n] for n in (1, 16, 64, len(data) // 3, len(data) // 2, len(data) - 7)]


@pytest.mark.parametrize("name", ["a.wav", "a.flac", "a.ogg", "i.png", "i.jpg", "v.mp4", "codes.npy", "reply.wav"])
def test_truncated_and_random_files_of_every_format_skip_their_line(media, tmp_path, capsys, name):
    root, files = media
    rng = random.Random(name)
    bad = truncations(files[name]) + [rng.randbytes(n) for n in (10, 1000, 20000)]
    bad += [files[name][:12] + rng.randbytes(4000)]  # a right header over noise
    lines = []
    for i, data in enumerate(bad):
        fname = f"bad{i}{name[name.index('.'):]}"
        (tmp_path / fname).write_bytes(data)
        if name.startswith("i."):
            lines.append(line(user({"image": fname})))
        elif name == "v.mp4":
            lines.append(line(user({"video": fname, "use_audio": True})))
        elif name == "codes.npy":
            lines.append(line(user({"text": "hi"}), spoken(str(root / "reply.wav"), codec=fname)))
        elif name == "reply.wav":
            lines.append(line(user({"text": "hi"}), spoken(fname)))
        else:
            lines.append(line(user({"audio": fname})))
    lines.append(line(user({"text": "a good line"})))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    code, skipped, printed = pack(manifest, tmp_path / "out", capsys=capsys)
    assert code == 0, printed[-2000:]
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["samples"] + len(skipped) == len(lines)  # every line packed or reported
    lines_skipped = {s["line"] for s in skipped}
    assert {7, 8, 9} <= lines_skipped and len(lines) not in lines_skipped  # noise out, the good line in
    assert all(s["reason"].startswith(f"line {s['line']}") for s in skipped)


def test_a_pack_that_keeps_nothing_fails(media, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(line(user({"audio": "missing.wav"})) + "\n" + "{broken\n")
    code = main(["data", "pack", str(manifest), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "no sample of" in err and "all 2 non-empty line(s) were skipped" in err


def test_pack_and_training_refuse_a_turn_with_the_same_words():
    """One checker (``omnitrain.data.turns``) for both sides: a part with two kinds (text and
    audio: training used to take the text and drop the audio) and a user turn with speech
    (ignored in training before) are refused at pack time and at training time alike."""
    from omnitrain.data.build.pack import PackError, _check_turn
    from omnitrain.data.sample_builder import SampleBuilder, SampleError
    from omnitrain.run_config import compose_config

    builder = SampleBuilder.from_config(compose_config(["recipe=smoke"]))
    for turn, needle in (
        ({"role": "user", "content": [{"text": "hi", "audio": "a.wav"}]}, "needs exactly one of"),
        ({"role": "user", "content": [{"text": "hi"}], "speech": "a.wav"}, "only assistant turns speak"),
    ):
        with pytest.raises(PackError, match=needle):
            _check_turn(turn, 0, "line 1")
        with pytest.raises(SampleError, match=needle):
            builder.build({"turns": [turn]}, lambda name: b"", "k")
