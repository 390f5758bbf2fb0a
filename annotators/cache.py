"""A durable, content-addressed cache of teacher answers: nothing already answered is paid for twice.

The key is sha256(model, prompt version, whitespace-normalised text), so the same paragraph found in
two articles or two runs is asked once. SQLite in WAL mode commits each answer as it arrives: a run
killed with `kill -9` loses at most the requests in flight, and a restart finds everything else.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable

from annotators.taxonomy import Answer


def normalise_text(text: str) -> str:
    return " ".join(text.split())


def text_sha256(text: str) -> str:
    """sha256 of the whitespace-normalised text (the replay teacher's first match key too)."""
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def cache_key(model: str, prompt_version: str, text: str) -> str:
    return hashlib.sha256(f"{model}\x00{prompt_version}\x00{normalise_text(text)}".encode()).hexdigest()


class AnswerCache:
    """SQLite-backed map cache_key -> Answer; safe to share between threads of one process."""

    def __init__(self, path: str):
        self.path = path
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable against process crashes
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, model TEXT, prompt_version TEXT,"
            " answer TEXT NOT NULL, created REAL)"
        )

    def get(self, key: str) -> Answer | None:
        with self._lock:
            row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return Answer.from_json(row[0]) if row else None

    def get_many(self, keys: Iterable[str]) -> dict[str, Answer]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, Answer] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                for key, answer in self._db.execute(
                    f"SELECT key, answer FROM answers WHERE key IN ({marks})", chunk
                ):
                    found[key] = Answer.from_json(answer)
        return found

    def put(self, key: str, answer: Answer, model: str = "", prompt_version: str = "") -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)",
                (key, model, prompt_version, answer.to_json(), time.time()),
            )

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> AnswerCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
