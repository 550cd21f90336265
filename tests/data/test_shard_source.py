"""Shards wherever they live: one real shard read back through a path, file://, pipe:,
a real HTTP server and fsspec's memory filesystem; and the errors a user sees."""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import threading
from pathlib import Path

import pytest

from omnitrain.data.build.shard_writer import ShardWriter, write_index
from omnitrain.data.shard_index import load_index
from omnitrain.data.shard_source import (
    ShardSourceError,
    beside,
    is_url,
    open_shard,
    read_bytes,
    shard_signature,
)
from omnitrain.data.shards import ShardError, resolve_shards


def write_shard(path: Path, samples: int, tag: str = "") -> None:
    with ShardWriter(path) as w:
        for i in range(samples):
            w.write({"__key__": f"s{i:03d}", "txt": f"sample {i}{tag}".encode(), "json": b'{"i": %d}' % i})


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def served(tmp_path):
    """``tmp_path`` served by a real HTTP server on 127.0.0.1; yields its base URL."""
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


SOURCES = {  # how each kind of URL names the shard at ``path``, served from ``base``
    "path": (lambda path, base: str(path), True),
    "file": (lambda path, base: path.as_uri(), True),
    "pipe": (lambda path, base: f"pipe:cat {path}", False),
    "http": (lambda path, base: f"{base}/{path.name}", False),
}


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_a_shard_reads_back_byte_identical_from_every_source(tmp_path, served, kind):
    shard = tmp_path / "train-000000.tar"
    write_shard(shard, 5)
    name, seekable = SOURCES[kind]
    url = name(shard, served)
    with open_shard(url) as f:
        assert f.seekable() is seekable
        data = f.read()
    assert data == shard.read_bytes() and len(data) > 0
    assert read_bytes(url) == data
    assert is_url(url) is (kind != "path")


def samples_of(url: str) -> int:
    """The count training plans from (``omnitrain.data.shard_index``)."""
    return load_index([url]).counts[0]


@pytest.mark.parametrize("kind", sorted(SOURCES))
def test_samples_are_counted_at_every_source(tmp_path, served, kind):
    shard = tmp_path / "train-000000.tar"
    write_shard(shard, 7)
    url = SOURCES[kind][0](shard, served)
    assert samples_of(url) == 7  # by reading tar headers: there is no index.json yet
    write_index(tmp_path, [{"name": shard.name, "samples": 99}])
    # the index beside the shard is believed where there is a "beside" (not for pipe:)
    assert samples_of(url) == (7 if kind == "pipe" else 99)


@pytest.mark.parametrize("kind", ["path", "file", "http"])
def test_the_signature_changes_when_the_shard_changes(tmp_path, served, kind):
    shard = tmp_path / "train-000000.tar"
    write_shard(shard, 3)
    url = SOURCES[kind][0](shard, served)
    before = shard_signature(url)
    assert before is not None and before == shard_signature(url)
    written = shard.stat()
    write_shard(shard, 4, tag=" again")  # tar pads to 10 KiB: the same size as before
    assert shard.stat().st_size == written.st_size
    # a rewrite a little later (HTTP's Last-Modified counts whole seconds)
    later = written.st_mtime_ns + 2_000_000_000
    os.utime(shard, ns=(later, later))
    after = shard_signature(url)
    assert after is not None and after != before


def test_a_pipe_has_no_signature_and_a_missing_shard_none_either(tmp_path, served):
    assert shard_signature(f"pipe:cat {tmp_path}/x.tar") is None
    assert shard_signature(str(tmp_path / "missing.tar")) is None
    assert shard_signature(f"{served}/missing.tar") is None


def test_fsspec_urls_read_sign_and_find_their_index():
    """fsspec's in-memory filesystem: a real backend that needs no extra package."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/omnitrain-test/train-000000.tar", b"tar bytes")
    fs.pipe("/omnitrain-test/index.json", b'{"shards": [{"name": "train-000000.tar", "samples": 12}]}')
    url = "memory://omnitrain-test/train-000000.tar"
    try:
        assert is_url(url) and read_bytes(url) == b"tar bytes"
        assert beside(url, "index.json") == "memory://omnitrain-test/index.json"
        assert samples_of(url) == 12
        first = shard_signature(url)
        assert first is not None and "size=9" in first
        assert resolve_shards("memory://omnitrain-test/train-{000000..000001}.tar", "data.train_shards") == [
            url, "memory://omnitrain-test/train-000001.tar"]
    finally:
        fs.rm("/omnitrain-test", recursive=True)


@pytest.mark.parametrize("url,expected", [
    ("https://h/d/train-0.tar", "https://h/d/index.json"),
    ("https://h/d/train-0.tar?X-Amz-Signature=abc", "https://h/d/index.json"),
    ("/x/y.tar", "/x/index.json"),
    ("y.tar", "index.json"),
    ("s3://b/p/t.tar", "s3://b/p/index.json"),
    ("gs://b/t.tar", "gs://b/index.json"),
    ("file:///x/y.tar", "file:///x/index.json"),
    ("pipe:aws s3 cp s3://b/p/t.tar -", None),
])
def test_beside(url, expected):
    assert beside(url, "index.json") == expected


def test_a_failing_command_is_an_error_naming_it():
    with pytest.raises(OSError, match=r"pipe:false failed with exit status 1 \(no stderr\)"), \
            open_shard("pipe:false") as f:
        assert f.read() == b""
    with pytest.raises(ShardSourceError) as err, open_shard("pipe:echo no credentials >&2; exit 3") as f:
        f.read()
    assert "exit status 3: no credentials" in str(err.value)


def test_closing_a_pipe_early_stops_the_command_without_an_error():
    f = open_shard("pipe:yes")
    assert f.read(4) == b"y\ny\n" and not f.seekable()
    f.close()
    assert f.raw.proc.returncode is not None  # stopped, not left running


def test_an_http_error_names_the_url(served):
    url = f"{served}/missing-000000.tar"
    with pytest.raises(ShardSourceError, match=f"{url}: HTTP 404"):
        open_shard(url)


def test_an_unreachable_server_names_the_url(served):
    url = "http://127.0.0.1:9/train-000000.tar"  # the discard port: nothing listens
    with pytest.raises(ShardSourceError, match=f"{url}: cannot reach the server"):
        open_shard(url)


@pytest.mark.parametrize("scheme,package", [("s3", "s3fs"), ("gs", "gcsfs")])
def test_a_missing_fsspec_backend_names_the_package(scheme, package):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    url = f"{scheme}://bucket/x.tar"
    hint = f"{url} needs the {package} package (pip install {package}) to read {scheme}:// URLs"
    with pytest.raises(ShardSourceError, match=rf"^{hint}$".replace("(", r"\(").replace(")", r"\)")):
        open_shard(url)
    with pytest.raises(ShardError) as err:  # at resolve time, before any expensive work
        resolve_shards(f"{scheme}://bucket/x-{{0..1}}.tar", "data.train_shards")
    assert str(err.value) == f"data.train_shards: {scheme}://bucket/x-0.tar needs the {package} package " \
                             f"(pip install {package}) to read {scheme}:// URLs"


def test_brace_patterns_expand_in_urls_and_urls_are_not_opened_at_resolve():
    assert resolve_shards("http://h/d/train-{000000..000002}.tar", "data.train_shards") == [
        "http://h/d/train-000000.tar", "http://h/d/train-000001.tar", "http://h/d/train-000002.tar"]
    assert resolve_shards(["pipe:cat /nowhere/a-{0..1}.tar", "https://h/v.tar"], "data.val_shards") == [
        "pipe:cat /nowhere/a-0.tar", "pipe:cat /nowhere/a-1.tar", "https://h/v.tar"]


def test_an_unknown_scheme_lists_the_supported_ones():
    with pytest.raises(ShardError) as err:
        resolve_shards("nope://bucket/x.tar", "data.train_shards")
    msg = str(err.value)
    assert msg.startswith("data.train_shards: nope://bucket/x.tar: unknown URL scheme 'nope'")
    assert all(s in msg for s in ("pipe:COMMAND", "file://", "https://", "s3://", "gs://"))


def test_a_glob_in_a_url_is_refused():
    with pytest.raises(ShardError, match=r"data.val_shards: https://h/\*.tar: globs work only for local paths"):
        resolve_shards("https://h/*.tar", "data.val_shards")


def test_file_urls_are_checked_like_local_paths(tmp_path):
    shard = tmp_path / "train-000000.tar"
    write_shard(shard, 2)
    assert resolve_shards(shard.as_uri(), "data.train_shards") == [str(shard)]
    with pytest.raises(ShardError, match="shard\\(s\\) not found: .*nothing.tar"):
        resolve_shards((tmp_path / "nothing.tar").as_uri(), "data.train_shards")
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(ShardError, match=r"shard\(s\) with no samples: .*empty.tar \(0 bytes\)"):
        resolve_shards((tmp_path / "empty.tar").as_uri(), "data.train_shards")
    with pytest.raises(ShardError, match="file:///abs/path.tar"):
        resolve_shards("file://relative/x.tar", "data.train_shards")
