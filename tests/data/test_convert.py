"""``omnitrain data convert``: each format's sample file becomes a manifest that packs into
shards that train; what cannot be mapped is counted with its reason."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from omnitrain.cli import main
from omnitrain.data.build.convert import ConvertError, convert
from tests.helpers import smoke_overrides

FIXTURES = Path(__file__).parent / "fixtures" / "convert"


@pytest.fixture
def source(demo_dir, tmp_path) -> Path:
    """The fixture files next to a media/ folder of real demo media (wav, jpg, mp4)."""
    folder = tmp_path / "src"
    shutil.copytree(FIXTURES, folder)
    heldout = demo_dir / "heldout"
    (folder / "media").mkdir()
    for kind, name in (("audio", "digits.wav"), ("image", "digits.jpg"), ("video", "digits.mp4")):
        shutil.copy(next(heldout.glob(f"*_{kind}_*")), folder / "media" / name)
    return folder


def pack_and_train(manifest: Path, demo_dir: Path, tmp_path: Path, samples: int) -> None:
    out = tmp_path / "shards"
    assert main(["data", "pack", str(manifest), str(out), "recipe=smoke"]) == 0
    assert json.loads((out / "index.json").read_text())["samples"] == samples
    shards = f"{out}/shard-*.tar"
    overrides = [*smoke_overrides(demo_dir, tmp_path / "run", "trainer.max_steps=2"),
                 f"data.train_shards={shards}", f"data.val_shards={shards}", "trainer.limit_val_batches=0"]
    assert main(["train", *overrides]) == 0
    assert (tmp_path / "run").is_dir()


def reasons(out: Path) -> dict[int, str]:
    lines = Path(f"{out}.skipped.jsonl").read_text().splitlines()
    return {json.loads(x)["record"]: json.loads(x)["reason"] for x in lines}


def test_sharegpt(source, demo_dir, tmp_path, capsys):
    out = tmp_path / "sharegpt.jsonl"
    assert main(["data", "convert", "--from", "sharegpt", str(source / "sharegpt.json"), str(out)]) == 0
    assert "converted 3 conversation(s)" in capsys.readouterr().out
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows[0] == {"turns": [
        {"role": "system", "content": [{"text": "You answer with the digits you perceive."}]},
        {"role": "user", "content": [{"audio": "src/media/digits.wav"}, {"text": "Which digits do you hear?"}]},
        {"role": "assistant", "content": [{"text": "7 0"}]}]}
    assert rows[1]["turns"][0]["content"] == [{"image": "src/media/digits.jpg"}, {"text": "\nWhich digits are shown?"}]
    assert rows[1]["turns"][2]["content"] == [{"text": "And in this clip? "}, {"video": "src/media/digits.mp4"}]
    assert rows[2]["turns"][0] == {"role": "system", "content": [{"text": "Be brief."}]}  # the top-level system
    why = reasons(out)
    assert sorted(why) == [4, 5, 6]
    assert "'function_call' has no omnitrain counterpart" in why[4]
    assert "<image> placeholder 2 but only 1 image entries" in why[5]
    assert "file 'media/missing.wav' not found" in why[6]
    pack_and_train(out, demo_dir, tmp_path, samples=3)


def test_llamafactory(source, demo_dir, tmp_path):
    out = tmp_path / "mllm.jsonl"
    result = convert("llamafactory", source / "llamafactory.jsonl", out, video_audio=True)
    assert result.converted == 3
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows[1]["turns"][0]["content"][:2] == [{"image": "src/media/digits.jpg"},
                                                  {"video": "src/media/digits.mp4", "use_audio": True}]
    assert [t["role"] for t in rows[2]["turns"]] == ["user", "assistant"]  # the unanswered last turn dropped
    why = reasons(out)
    assert sorted(why) == [4, 5, 6]
    assert "'tool'" in why[4] and "the assistant turn holds media" in why[5] and "not valid JSON" in why[6]
    pack_and_train(out, demo_dir, tmp_path, samples=3)


def hf_rows(media: Path) -> list[dict]:
    """Rows as datasets stores them: messages, and Image/Audio features as {"bytes", "path"}."""
    image, audio = (media / "digits.jpg").read_bytes(), (media / "digits.wav").read_bytes()
    return [
        {"messages": [{"role": "user", "content": "<image>Which digits are shown?"},
                      {"role": "assistant", "content": "4 9"}],
         "images": [{"bytes": image, "path": "digits.jpg"}], "audios": []},
        {"messages": [{"role": "user", "content": "<audio>Which digits do you hear?"},
                      {"role": "assistant", "content": "7 0"}],
         "images": [], "audios": [{"bytes": audio, "path": None}]},
        {"messages": [{"role": "user", "content": "<audio>and?"}, {"role": "assistant", "content": "x"}],
         "images": [], "audios": []},
    ]


@pytest.mark.parametrize("layout", ["save_to_disk", "parquet"])
def test_hf(source, demo_dir, tmp_path, layout):
    pa = pytest.importorskip("pyarrow")  # a dev dependency; without it the error names what to install
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(hf_rows(source / "media"))
    folder = tmp_path / "ds"
    folder.mkdir()
    if layout == "save_to_disk":  # the files datasets.save_to_disk writes: Arrow IPC streams + json
        with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink, \
                pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
        (folder / "dataset_info.json").write_text("{}")
    else:
        pq.write_table(table, folder / "train-00000-of-00001.parquet")
    out = tmp_path / "hf.jsonl"
    result = convert("hf", folder, out)
    assert result.converted == 2 and [s["record"] for s in result.skipped] == [3]
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    image = rows[0]["turns"][0]["content"][0]["image"]
    assert image == "hf_media/r0000001_image0.jpg" and (tmp_path / image).read_bytes()[:3] == b"\xff\xd8\xff"
    assert rows[1]["turns"][0]["content"][0]["audio"].endswith(".wav")  # named by its bytes
    if layout == "parquet":
        return  # the two layouts give the same rows; train once
    pack_and_train(out, demo_dir, tmp_path, samples=2)


def test_nothing_converted_fails_with_the_reason(source, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "x", "output": "y"}) + "\n")
    assert main(["data", "convert", "--from", "llamafactory", str(bad), str(tmp_path / "o.jsonl")]) != 0
    err = capsys.readouterr().err
    assert "no record" in err and "needs a non-empty 'messages' list" in err
    with pytest.raises(ConvertError, match="it has 'conversations': use --from sharegpt"):
        convert("llamafactory", source / "sharegpt.json", tmp_path / "o.jsonl")
    with pytest.raises(ConvertError, match="unknown format"):
        convert("alpaca", bad, tmp_path / "o.jsonl")
    with pytest.raises(ConvertError, match="holds no"):
        convert("hf", source / "media", tmp_path / "o.jsonl")


def test_without_pyarrow_the_error_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now raises ImportError
    (tmp_path / "ds").mkdir()
    with pytest.raises(ConvertError, match=r"pip install pyarrow"):
        convert("hf", tmp_path / "ds", tmp_path / "o.jsonl")


def test_typed_content_parts(source, tmp_path):
    """OpenAI-style parts: a media part with a path, or without one (the row's next entry)."""
    from omnitrain.data.build.convert import Record, to_conversation

    row = {"messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "audio", "path": "media/digits.wav"},
                                     {"type": "text", "text": "Digits?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "4 9"}]}],
        "images": ["media/digits.jpg"]}
    conv = to_conversation(Record(row, source), "llamafactory", tmp_path)
    assert conv["turns"][0]["content"] == [{"image": "src/media/digits.jpg"}, {"audio": "src/media/digits.wav"},
                                           {"text": "Digits?"}]
