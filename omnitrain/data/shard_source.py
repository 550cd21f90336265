"""Where a shard lives: a local path, ``file://``, ``pipe:COMMAND``, ``http(s)://``, or an
fsspec URL (``s3://``, ``gs://``, ...). One ``open_shard`` gives a readable binary stream
for all of them, so the pipeline does not care where shards are stored.

fsspec backends (s3fs, gcsfs) are optional: a URL that needs a missing one fails with
the package to install, never with an ImportError from deep inside a data worker.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tempfile
import urllib.error
import urllib.request
from typing import BinaryIO
from urllib.parse import urlsplit, urlunsplit

HTTP_TIMEOUT_S = 60.0
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class ShardError(FileNotFoundError):
    """Shards that cannot be used; the CLI prints the message and exits with status 2."""


class ShardSourceError(ShardError):
    """A shard URL that cannot be read: unknown scheme, missing fsspec backend, a failed
    ``pipe:`` command or HTTP request. An ``OSError``, like a local read error."""


def url_scheme(spec: str) -> str | None:
    """``pipe`` for ``pipe:CMD``, ``s3`` for ``s3://...``; None for a plain path."""
    if spec.startswith("pipe:"):
        return "pipe"
    match = _SCHEME.match(spec)
    return match.group(1).lower() if match else None


def fsspec_protocols() -> list[str]:
    from fsspec.registry import known_implementations

    return sorted(known_implementations)


def is_url(spec: str) -> bool:
    """A spec ``open_shard`` reads as a URL (a plain path or an unknown scheme is not)."""
    scheme = url_scheme(spec)
    if scheme is None:
        return False  # a plain path: no fsspec import on the common road
    return scheme in ("pipe", "file", "http", "https") or scheme in fsspec_protocols()


def supported_schemes() -> str:
    others = [p for p in fsspec_protocols() if p not in ("file", "http", "https", "s3", "gs")]
    return "pipe:COMMAND, file://, http://, https://, s3://, gs://, or another fsspec protocol (" + \
        ", ".join(others) + ")"


def local_path(url: str) -> str | None:
    """The local path of a plain path or a ``file://`` URL; None for anything remote."""
    scheme = url_scheme(url)
    if scheme is None:
        return url
    if scheme != "file":
        return None
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ShardSourceError(f"{url}: a file:// URL needs an absolute path (file:///abs/path.tar); "
                               f"'{parts.netloc}' was read as a host name")
    return urllib.request.url2pathname(parts.path)


def check_backend(url: str) -> None:
    """Raise ``ShardSourceError`` naming the package to install when the fsspec backend of
    ``url`` cannot be imported (s3fs for s3://, gcsfs for gs://)."""
    from fsspec.registry import get_filesystem_class, known_implementations

    scheme = url_scheme(url) or "file"
    try:
        get_filesystem_class(scheme)
    except ImportError as exc:
        package = known_implementations[scheme]["class"].split(".")[0]
        raise ShardSourceError(f"{url} needs the {package} package (pip install {package}) to read "
                               f"{scheme}:// URLs") from exc


def open_shard(url: str) -> BinaryIO:
    """A readable binary stream of the shard at ``url``; use it as a context manager.
    ``seekable()`` is True for local files and fsspec files, False for pipes and HTTP,
    so callers can skip tar members cheaply only where seeking costs nothing."""
    path = local_path(url)
    if path is not None:
        return open(path, "rb")  # noqa: SIM115 -- the caller closes it
    scheme = url_scheme(url)
    if scheme == "pipe":
        return io.BufferedReader(_Pipe(url[len("pipe:"):]))  # type: ignore[return-value]
    if scheme in ("http", "https"):
        return _http(url, "GET")
    if scheme not in fsspec_protocols():
        raise ShardSourceError(f"{url}: unknown URL scheme '{scheme}'; use {supported_schemes()}")
    import fsspec

    check_backend(url)
    try:
        return fsspec.open(url, "rb").open()
    except FileNotFoundError as exc:
        raise ShardSourceError(f"{url}: not found ({exc})") from exc


def read_bytes(url: str) -> bytes:
    """All of a small file (``index.json``) at any URL ``open_shard`` reads."""
    with open_shard(url) as f:
        return f.read()


def beside(url: str, name: str) -> str | None:
    """The URL of file ``name`` in the shard's folder (where ``index.json`` lives); None for
    ``pipe:``, whose command says nothing about folders. Query strings are dropped."""
    scheme = url_scheme(url)
    if scheme == "pipe":
        return None
    if scheme is None:
        return os.path.join(os.path.dirname(url), name)
    if scheme in ("http", "https"):
        url = urlunsplit(urlsplit(url)._replace(query="", fragment=""))
    return f"{url.rpartition('/')[0]}/{name}"


def shard_signature(url: str) -> str | None:
    """A string that changes when the shard changes (size with mtime or ETag), to key a
    cache of per-shard facts such as sample counts. None when it cannot tell: ``pipe:``,
    a server or store that gives no modification time or ETag, a shard not reachable now.
    Size alone is not enough: shards packed to a fixed size often have equal sizes."""
    scheme = url_scheme(url)
    if scheme == "pipe":
        return None
    path = local_path(url)
    if path is not None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return f"size={st.st_size} mtime_ns={st.st_mtime_ns}"
    if scheme in ("http", "https"):
        try:
            with _http(url, "HEAD") as response:
                headers = response.headers
        except ShardSourceError:
            return None
        return _signature(headers.get("Content-Length"), headers.get("ETag") or headers.get("Last-Modified"))
    import fsspec

    check_backend(url)
    fs, inner = fsspec.core.url_to_fs(url)
    try:
        info = fs.info(inner)
    except OSError:
        return None
    stamp = next((info[k] for k in ("ETag", "etag", "mtime", "LastModified", "last_modified",
                                     "updated", "md5Hash", "created") if info.get(k)), None)
    return _signature(info.get("size"), stamp)


def _signature(size: object, stamp: object) -> str | None:
    return None if stamp is None else f"size={size} stamp={stamp}"


def _http(url: str, method: str) -> BinaryIO:
    try:
        return urllib.request.urlopen(urllib.request.Request(url, method=method),
                                      timeout=HTTP_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise ShardSourceError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ShardSourceError(f"{url}: cannot reach the server ({getattr(exc, 'reason', exc)})") from exc


class _Pipe(io.RawIOBase):
    """The stdout of a shell command. Closing after the end of its output waits for the
    command and raises if it failed; closing earlier stops it (the reader is done), unless
    it had already failed on its own. stderr goes to a temporary file so a chatty command
    never blocks on a full pipe, and its tail goes into the error."""

    def __init__(self, command: str) -> None:
        super().__init__()
        self.command = command
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in close()
        self.proc = subprocess.Popen(command, shell=True, stdout=subprocess.PIPE, stderr=self.stderr,
                                     bufsize=0)  # unbuffered: the BufferedReader around us buffers
        self.at_end = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.proc.stdout.readinto(buffer)
        self.at_end = self.at_end or n == 0
        return n

    def close(self) -> None:
        if self.closed:
            return
        stopped = False
        try:
            if not self.at_end and self.proc.poll() is None:
                self.proc.stdout.close()  # the command sees a closed pipe, its children too
                self.proc.terminate()
                stopped = True
            status = self.proc.wait()
            if not stopped and status != 0:
                self.stderr.seek(0)
                tail = self.stderr.read().decode(errors="replace").strip()[-500:]
                raise ShardSourceError(f"pipe:{self.command} failed with exit status {status}"
                                       + (f": {tail}" if tail else " (no stderr)"))
        finally:
            self.proc.stdout.close()
            self.stderr.close()
            super().close()
