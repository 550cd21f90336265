"""``Packer`` on small manifests, fast (no codec, no training pipeline): resume bookkeeping,
progress, line numbers, turn checks and codec-token checks (issue 26: mutation survivors)."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest

from omnitrain.cli import _parse_size
from omnitrain.data.build.media_writers import encode_audio, encode_image
from omnitrain.data.build.pack import Packer, PackOptions
from tests.data.test_sample_builder import samples_of

CODEC = SimpleNamespace(sample_rate=16000)  # only replies without codec tokens need a real one


def user(*content) -> dict:
    return {"role": "user", "content": list(content)}


def image_line(**extra) -> str:
    return json.dumps({"turns": [user({"image": "i.png"}, {"text": "?"})], **extra})


def reply_line(tokens: str) -> str:
    assistant = {"role": "assistant", "content": [{"text": "1 2"}], "speech": "reply.wav", "codec": tokens}
    return json.dumps({"turns": [user({"text": "say 1 2"}), assistant]})


def write_manifest(folder, lines) -> object:
    folder.mkdir(exist_ok=True)
    (folder / "i.png").write_bytes(encode_image(np.full((8, 8, 3), 90, np.uint8)))
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)
    (folder / "reply.wav").write_bytes(encode_audio(tone, 16000))
    path = folder / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def packer(path, out, **opts) -> Packer:
    return Packer(path, out, CODEC, PackOptions(**{"shard_bytes": 1, **opts}))


def test_api_default_shard_size_is_the_cli_default():
    """``PackOptions()`` from Python packs shards of the size ``data pack`` does by default."""
    assert PackOptions().shard_bytes == _parse_size("256MB") == 256 << 20


def test_line_count_is_the_progress_bar_total(tmp_path):
    """Every manifest line, blank ones too: the progress bar advances once per line."""
    path = write_manifest(tmp_path / "raw", [image_line(), "", image_line(), "{bad"])
    assert packer(path, tmp_path / "out").line_count() == 4


def test_progress_advances_once_per_line_and_a_resume_starts_where_it_left(tmp_path):
    path = write_manifest(tmp_path / "raw", [image_line(), "", image_line()])
    calls = []
    packer(path, tmp_path / "out").run(progress=calls.append)
    assert calls == [0, 1, 1, 1]
    calls.clear()
    packer(path, tmp_path / "out").run(progress=calls.append)  # all done: jumps to the end
    assert calls == [3]


def test_resume_starts_after_the_last_of_several_finished_shards(tmp_path, monkeypatch):
    """One sample per shard; killed while closing the 4th: shards 0-2 are kept and only
    lines 4 and 5 are read again."""
    path = write_manifest(tmp_path / "raw", [image_line(id=i) for i in range(5)])
    out = tmp_path / "out"
    from omnitrain.data.build.shard_writer import ShardWriter

    real_close, closed = ShardWriter.close, []

    def crash_on_fourth(self):
        closed.append(1)
        if len(closed) == 4:
            raise KeyboardInterrupt("killed while packing")
        return real_close(self)

    monkeypatch.setattr(ShardWriter, "close", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        packer(path, out).run()
    monkeypatch.undo()
    read = []
    real_sample = Packer.sample
    monkeypatch.setattr(Packer, "sample", lambda self, raw, n: read.append(n) or real_sample(self, raw, n))
    result = packer(path, out).run()
    assert read == [3, 4] and result["resumed_from_line"] == 3
    index = json.loads((out / "index.json").read_text())
    assert [s["name"] for s in index["shards"]] == [f"shard-{i:06d}.tar" for i in range(5)]
    assert index["samples"] == 5


def test_a_finished_pack_run_again_keeps_the_report_of_its_last_line(tmp_path):
    """The last line was skipped; a second run reads nothing and must not lose its report."""
    path = write_manifest(tmp_path / "raw", [image_line(), json.dumps({"turns": [user({"image": "gone.png"})]})])
    first = packer(path, tmp_path / "out").run()
    again = packer(path, tmp_path / "out").run()
    assert [s["line"] for s in first["skipped"]] == [s["line"] for s in again["skipped"]] == [2]
    report = [json.loads(x) for x in (tmp_path / "out/shard.skipped.jsonl").read_text().splitlines()]
    assert [r["line"] for r in report] == [2] and "gone.png" in report[0]["reason"]


def test_each_sample_records_its_manifest_line(tmp_path):
    """``source.manifest_line`` counts from 1, blank lines included, so a sample can be traced."""
    path = write_manifest(tmp_path / "raw", [image_line(id="a"), "", image_line(id="b")])
    packer(path, tmp_path / "out", shard_bytes=1 << 20).run()
    sources = [json.loads(m["json"])["source"] for m in samples_of(tmp_path / "out/shard-000000.tar").values()]
    assert sorted(sources, key=lambda s: s["id"]) == [{"manifest_line": 1, "id": "a"},
                                                      {"manifest_line": 3, "id": "b"}]


def test_turns_must_be_a_non_empty_list(tmp_path):
    lines = ['{"turns": []}', '{"id": 1}', '{"turns": "hi"}', "[1, 2]", image_line()]
    path = write_manifest(tmp_path / "raw", lines)
    skipped = packer(path, tmp_path / "out").run()["skipped"]
    assert [s["line"] for s in skipped] == [1, 2, 3, 4]
    assert all(s["reason"] == f"line {s['line']}: needs a non-empty 'turns' list" for s in skipped)


def test_a_turn_training_would_refuse_is_skipped_at_pack_time(tmp_path):
    """A user turn with speech (training rejects it) must not reach a shard."""
    bad = json.dumps({"turns": [{"role": "user", "content": [{"text": "hi"}], "speech": "reply.wav"}]})
    path = write_manifest(tmp_path / "raw", [bad, image_line()])
    skipped = packer(path, tmp_path / "out").run()["skipped"]
    assert [s["line"] for s in skipped] == [1] and "only assistant turns speak" in skipped[0]["reason"]


def npy(array, **kw) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, **kw)
    return buf.getvalue()


def test_pickled_codec_tokens_are_refused_without_unpickling(tmp_path):
    """An object .npy is a pickle: loading it could run code from the manifest's author."""
    raw = tmp_path / "raw"
    path = write_manifest(raw, [reply_line("t.npy"), image_line()])
    (raw / "t.npy").write_bytes(npy(np.array([1, "x"], dtype=object), allow_pickle=True))
    skipped = packer(path, tmp_path / "out").run()["skipped"]
    assert skipped == [{"line": 1, "reason": "line 1: codec tokens 't.npy' are not a .npy array "
                        "(ValueError: Object arrays cannot be loaded when allow_pickle=False)"}]


@pytest.mark.parametrize("tokens", [np.array([[1, 2], [3, 4]], np.int32), np.array([1.0, 2.0])])
def test_codec_tokens_must_be_a_1d_integer_array(tmp_path, tokens):
    raw = tmp_path / "raw"
    path = write_manifest(raw, [reply_line("bad.npy"), reply_line("good.npy")])
    (raw / "bad.npy").write_bytes(npy(tokens))
    (raw / "good.npy").write_bytes(npy(np.array([3, 3, 0, 9], np.int32)))
    skipped = packer(path, tmp_path / "out").run()["skipped"]
    assert skipped == [{"line": 1, "reason": "line 1: codec tokens 'bad.npy' must be a 1-D integer array"}]


def test_packs_into_a_folder_whose_parents_do_not_exist_yet(tmp_path):
    path = write_manifest(tmp_path / "raw", [image_line()])
    packer(path, tmp_path / "shards/train/v1").run()
    assert (tmp_path / "shards/train/v1/shard-000000.tar").is_file()
