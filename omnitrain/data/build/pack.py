"""``omnitrain data pack``: a JSONL manifest of conversations -> webdataset shards.

Each manifest line is a conversation (README "Packing your own data"); media paths are
relative to the manifest's folder. Media bytes are stored as they are (after a decode
check), spoken replies get codec tokens from the configured codec, and shards are cut
at a target size. A line that cannot be used (missing or undecodable file, bad JSON,
non-UTF-8 bytes) is skipped and reported in ``<prefix>.skipped.jsonl``, never fatal;
the reasons name files, never quote them. A pack that keeps no sample is an error.

A manifest from elsewhere can name any file (``../``, absolute paths, symlinks):
``root`` (``--root DIR``) confines every media path, symlinks resolved, to one folder.

Re-running resumes: finished shards and the manifest lines they cover are recorded in
``<prefix>.pack_state.json``; only the remaining lines are packed.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from omnitrain.checksums import sha256_file
from omnitrain.data.build.shard_writer import ShardWriter, index_text
from omnitrain.data.media import MediaError, load_audio, load_image, load_video, why
from omnitrain.data.turns import MEDIA, turn_problem
from omnitrain.slots import Codec


class PackError(ValueError):
    pass


@dataclass
class PackOptions:
    shard_bytes: int = 256 * 1024 * 1024
    prefix: str = "shard"
    verify: bool = True
    root: str | None = None  # every media file must resolve to a path inside this folder


def _write_json(path: Path, data, text=None) -> None:
    """``data`` as JSON (``text(data)``, default indented), written beside and renamed."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text(data) if text else json.dumps(data, indent=2))
    os.replace(tmp, path)


class Packer:
    def __init__(self, manifest: Path, out: Path, codec: Codec, options: PackOptions, measure=None) -> None:
        """``measure`` (``sample_lengths.LengthMeter``): record each sample's token count."""
        self.manifest, self.out, self.codec, self.opt = Path(manifest), Path(out), codec, options
        self.measure = measure
        self.base = self.manifest.parent
        self.state_path = self.out / f"{options.prefix}.pack_state.json"
        self.skipped_path = self.out / f"{options.prefix}.skipped.jsonl"

    # ---- state -----------------------------------------------------------------
    def _load_state(self, digest: str) -> dict:
        fresh = {"manifest": str(self.manifest.resolve()), "manifest_sha256": digest,
                 "options": asdict(self.opt), "shards": [], "skipped": []}
        if not self.state_path.exists():
            return fresh
        state = json.loads(self.state_path.read_text())
        if state.get("manifest_sha256") != digest or state.get("options") != asdict(self.opt):
            raise PackError(
                f"{self.out} already holds '{self.opt.prefix}' shards packed from another manifest or "
                f"with other options ({self.state_path}); pack into a new folder, or use another --prefix"
            )
        return state

    def _save(self, state: dict) -> None:
        _write_json(self.state_path, state)
        self.skipped_path.write_text("".join(json.dumps(s) + "\n" for s in state["skipped"]))
        index_path = self.out / "index.json"
        index = json.loads(index_path.read_text()) if index_path.exists() else {"shards": []}
        others = [s for s in index.get("shards", []) if not s["name"].startswith(self.opt.prefix + "-")]
        keep = ("name", "samples", "bytes", "lengths_key", "lengths")
        shards = others + [{k: s[k] for k in keep if k in s} for s in state["shards"]]
        _write_json(index_path, {**index, "shards": shards, "samples": sum(s["samples"] for s in shards)}, index_text)

    # ---- packing ---------------------------------------------------------------
    def line_count(self) -> int:
        if not self.manifest.is_file():
            raise PackError(f"manifest '{self.manifest}' does not exist")
        return len(self.manifest.read_bytes().splitlines())

    def run(self, progress: Callable[[int], None] | None = None) -> dict:
        self.line_count()  # fails early on a missing manifest
        self.out.mkdir(parents=True, exist_ok=True)
        state = self._load_state(sha256_file(self.manifest))
        done_lines = state["shards"][-1]["end_line"] if state["shards"] else 0
        # reports for lines that will be read again are dropped (lines count from 1)
        state["skipped"] = [s for s in state["skipped"] if s["line"] <= done_lines]
        lines = self.manifest.read_bytes().splitlines()
        if progress:
            progress(done_lines)
        writer: ShardWriter | None = None
        first_line = done_lines
        for number in range(done_lines, len(lines)):
            raw = lines[number]
            if raw.strip():
                try:
                    sample = self.sample(raw, number)
                except (PackError, MediaError) as exc:
                    state["skipped"].append({"line": number + 1, "reason": str(exc)})
                    sample = None
                except Exception as exc:  # a codec or decoder failing on odd input skips the line too
                    state["skipped"].append({"line": number + 1, "reason": f"line {number + 1}: {why(exc, raw)}"})
                    sample = None
                if sample is not None:
                    if writer is None:
                        name = f"{self.opt.prefix}-{len(state['shards']):06d}.tar"
                        writer, first_line = ShardWriter(self.out / name, self.measure), number
                    writer.write(sample)
                    if writer.bytes >= self.opt.shard_bytes:
                        state["shards"].append({**writer.close(), "first_line": first_line, "end_line": number + 1})
                        self._save(state)
                        writer = None
            if progress:
                progress(1)
        if writer is not None:
            state["shards"].append({**writer.close(), "first_line": first_line, "end_line": len(lines)})
        elif state["shards"]:
            state["shards"][-1]["end_line"] = len(lines)  # trailing lines held nothing usable
        self._save(state)
        if not any(shard["samples"] for shard in state["shards"]):
            raise PackError(f"no sample of {self.manifest} could be packed: all {len(state['skipped'])} "
                            f"non-empty line(s) were skipped; the reasons are in {self.skipped_path}")
        return {"shards": state["shards"], "skipped": state["skipped"], "resumed_from_line": done_lines}

    def sample(self, raw: bytes, number: int) -> dict:
        where = f"line {number + 1}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PackError(f"{where} is not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc
        try:
            conv = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PackError(f"{where} is not valid JSON: {exc}") from exc
        turns = conv.get("turns") if isinstance(conv, dict) else None
        if not isinstance(turns, list) or not turns:
            raise PackError(f"{where}: needs a non-empty 'turns' list")
        key = f"s{number:09d}"
        members: dict[str, bytes] = {}
        out_turns = []
        for t, turn in enumerate(turns):
            _check_turn(turn, t, where)
            turn = dict(turn)
            parts = []
            for p, part in enumerate(turn.get("content", [])):
                part = dict(part)
                for kind in MEDIA:
                    if kind in part:
                        name = f"{kind}_{t}_{p}{Path(part[kind]).suffix.lower()}"
                        members[name] = self._media(kind, part[kind], where, part.get("use_audio", False))
                        part[kind] = name
                parts.append(part)
            turn["content"] = parts
            if "speech" in turn:
                speech_bytes = self._read(turn["speech"], where)
                name = f"reply_{t}{Path(turn['speech']).suffix.lower()}"
                members[name] = speech_bytes
                if "codec" in turn:
                    if self.opt.verify:  # the DiT trains on this audio: it must decode
                        load_audio(speech_bytes, self.codec.sample_rate, f"{where} speech '{turn['speech']}'")
                    members[f"reply_{t}.codec.npy"] = self._tokens_file(turn["codec"], where)
                else:
                    wave = load_audio(speech_bytes, self.codec.sample_rate, f"{where} speech '{turn['speech']}'")
                    buf = io.BytesIO()
                    np.save(buf, self.codec.encode(wave).numpy().astype(np.int32))
                    members[f"reply_{t}.codec.npy"] = buf.getvalue()
                turn["speech"], turn["codec"] = name, f"reply_{t}.codec.npy"
            if "reference" in turn:  # a recording of the reply's voice (flow_dit conditioning)
                name = f"reference_{t}{Path(turn['reference']).suffix.lower()}"
                members[name] = self._media("audio", turn["reference"], where, False)
                turn["reference"] = name
            out_turns.append(turn)
        conv = {**conv, "turns": out_turns, "source": {"manifest_line": number + 1, "id": conv.get("id")}}
        members["json"] = json.dumps(conv).encode()
        return {"__key__": key, **members}

    def _read(self, ref: str, where: str) -> bytes:
        if not isinstance(ref, str) or not ref:
            raise PackError(f"{where}: a media path must be a non-empty string, got {type(ref).__name__}")
        path = Path(ref) if Path(ref).is_absolute() else self.base / ref
        if self.opt.root is not None:
            path = path.resolve()  # '..' and every symlink on the way
            root = Path(self.opt.root).resolve()
            if not path.is_relative_to(root):
                raise PackError(f"{where}: '{ref}' is outside --root {root} (it resolves to {path}); "
                                "move the file under the root or pack with another --root")
        if not path.is_file():
            raise PackError(f"{where}: file '{ref}' not found (looked at {path})")
        return path.read_bytes()

    def _media(self, kind: str, ref: str, where: str, use_audio: bool) -> bytes:
        data = self._read(ref, where)
        if self.opt.verify:
            what = f"{where} {kind} '{ref}'"
            if kind == "audio":
                load_audio(data, 16000, what)
            elif kind == "image":
                load_image(data, what)
            else:
                load_video(data, 2.0, 1, 2, 16000 if use_audio else None, what)
        return data

    def _tokens_file(self, ref: str, where: str) -> bytes:
        data = self._read(ref, where)
        try:
            tokens = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as exc:
            raise PackError(f"{where}: codec tokens '{ref}' are not a .npy array ({why(exc, data)})") from exc
        if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
            raise PackError(f"{where}: codec tokens '{ref}' must be a 1-D integer array")
        return data


def _check_turn(turn, t: int, where: str) -> None:
    """The turn shapes training accepts (``omnitrain.data.turns``), checked here so a bad
    line is skipped at pack time, not in the middle of a run."""
    problem = turn_problem(turn, t)
    if problem:
        raise PackError(f"{where}: {problem}")
