"""Conversations for generation: one user turn, a system turn put first, media read from files."""

from __future__ import annotations

from pathlib import Path


def user_turn(text: str, audio: str | None = None, image: str | None = None,
              video: str | None = None, video_audio: bool = True, system: str | None = None) -> dict:
    """A one-turn conversation; media first, then the question (as in the demo data);
    with ``system``, a system turn before it."""
    content: list[dict] = []
    if audio:
        content.append({"audio": audio})
    if image:
        content.append({"image": image})
    if video:
        content.append({"video": video, "use_audio": video_audio})
    content.append({"text": text})
    turns = [{"role": "user", "content": content}]
    if system:
        turns.insert(0, {"role": "system", "content": [{"text": system}]})
    return {"turns": turns}


def with_system(conversation: dict, system: str | None) -> dict:
    """``conversation`` with a first system turn of ``system``, unless it has one already."""
    turns = list(conversation.get("turns") or [])
    if not system or (turns and isinstance(turns[0], dict) and turns[0].get("role") == "system"):
        return conversation
    return {**conversation, "turns": [{"role": "system", "content": [{"text": system}]}, *turns]}


def read_file(name: str) -> bytes:
    """A media file's bytes (the sample builder's reader for prompts given as paths)."""
    path = Path(name)
    if not path.is_file():
        raise FileNotFoundError(f"media file '{name}' does not exist")
    return path.read_bytes()
