"""What every teacher backend shares: the per-paragraph outcome, the interface, secrets and rate limits."""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from annotators.ledger import Ledger
from annotators.taxonomy import Answer


@dataclass(frozen=True)
class Outcome:
    """A paragraph's result: an Answer, or a dead-letter reason (+ detail) when the teacher gave none."""

    answer: Answer | None = None
    reason: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.answer is not None


OnResult = Callable[[int, Outcome], None]


class Teacher(Protocol):
    """Labels paragraph rows; calls `on_result(i, outcome)` as answers land (to persist them)."""

    model: str
    prompt_version: str
    cacheable: bool

    def label(self, rows: list[dict], ledger: Ledger, on_result: OnResult | None = None) -> list[Outcome]: ...


class TeacherError(RuntimeError):
    """A failure that no retry fixes (bad key, unknown model, unreachable server): the run stops."""


API_KEY_ENV = ("BIOMED_ENRICH_API_KEY", "OPENAI_API_KEY")


def resolve_api_key(api_key_file: str | None = None) -> str | None:
    """The API key from `api_key_file`, else $BIOMED_ENRICH_API_KEY, else $OPENAI_API_KEY (None if none)."""
    if api_key_file:
        key = Path(api_key_file).read_text(encoding="utf-8").strip()
        if not key:
            raise TeacherError(f"API key file {api_key_file} is empty")
        return key
    for name in API_KEY_ENV:
        if os.environ.get(name, "").strip():
            return os.environ[name].strip()
    return None


class Redactor:
    """Removes a secret from any text before it reaches a log, an error or an output file."""

    def __init__(self, secret: str | None):
        self._secret = secret if secret and len(secret) >= 4 else None

    def __call__(self, text: object) -> str:
        text = str(text)
        if self._secret:
            text = text.replace(self._secret, "***")
            # servers echo masked prefixes/suffixes of a wrong key ("sk-abc***wxyz"): drop those too
            for part in (self._secret[:8], self._secret[-4:]):
                if len(part) >= 4:
                    text = text.replace(part, "***")
        return text


def retry_after_seconds(headers: object) -> float | None:
    """Seconds a server asked us to wait (`retry-after-ms`, `retry-after` as seconds or HTTP date)."""
    if headers is None:
        return None
    get = getattr(headers, "get", None)
    if get is None:
        return None
    value = get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class AsyncRateLimiter:
    """Token buckets for requests and tokens per minute (None = unlimited), bursting up to `burst_s`."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        burst_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self._buckets: list[list[float] | None] = []
        for rate in (rpm, tpm):
            if rate:
                per_s = rate / 60.0
                cap = max(1.0, per_s * burst_s)
                self._buckets.append([per_s, cap, cap])  # rate, capacity, level
            else:
                self._buckets.append(None)
        self._clock, self._sleep = clock, sleep
        self._last = clock()
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int = 0) -> None:
        if not any(self._buckets):
            return
        async with self._lock:
            wants = (1.0, float(tokens))
            while True:
                now = self._clock()
                for b in self._buckets:
                    if b:
                        b[2] = min(b[1], b[2] + (now - self._last) * b[0])
                self._last = now
                waits = [
                    0.0 if b is None else max(0.0, (min(w, b[1]) - b[2]) / b[0])
                    for b, w in zip(self._buckets, wants, strict=True)
                ]
                if max(waits) <= 1e-6:  # within a microsecond: go (float rounding must not spin)
                    for b, w in zip(self._buckets, wants, strict=True):
                        if b:
                            b[2] -= w
                    return
                await self._sleep(max(waits))
