"""A bundle's files are hashed once per version: a second load reads the digests from the
cache; a file rewritten since (new mtime) is hashed again and a damaged one refused."""

from __future__ import annotations

import os

import pytest

from omnitrain import checksums
from omnitrain.checksums import sha256_cached, sha256_file


@pytest.fixture
def counted(monkeypatch, tmp_path):
    monkeypatch.setenv("OMNITRAIN_CACHE_DIR", str(tmp_path / "cache"))
    hashed = []

    def counting(path):
        hashed.append(path.name)
        return sha256_file(path)

    monkeypatch.setattr(checksums, "sha256_file", counting)
    return hashed


def test_digests_are_cached_until_the_file_changes(counted, tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"weights")
    b.write_bytes(b"config")
    first = sha256_cached([a, b])
    assert counted == ["a.bin", "b.bin"] and first[a] == sha256_file(a)
    assert sha256_cached([a, b]) == first and counted == ["a.bin", "b.bin"]  # nothing hashed again
    stat = a.stat()
    a.write_bytes(b"WEIGHTS")  # same size, rewritten: a new mtime
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    again = sha256_cached([a, b])
    assert counted[2:] == ["a.bin"] and again[a] != first[a] and again[b] == first[b]


def test_an_unwritable_cache_costs_only_the_hashing(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("OMNITRAIN_CACHE_DIR", str(blocker / "cache"))
    a = tmp_path / "a.bin"
    a.write_bytes(b"x")
    assert sha256_cached([a])[a] == sha256_file(a)
