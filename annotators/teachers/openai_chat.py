"""The live teacher: any OpenAI-compatible chat server (OpenAI, vLLM, TGI, ...) via `openai`'s async client.

The client's own retries are off (max_retries=0): this module owns the policy so it can be counted
and bounded. Transient failures (429, 5xx, timeouts, broken connections) are retried with
exponential backoff that honours Retry-After; answers that fail validation (invalid JSON,
out-of-taxonomy labels, refusals, truncation) are re-asked a few times, then dead-lettered with
the reason. A server that rejects structured output or logprobs is re-asked without them. Errors
no retry fixes (bad key, unknown model) stop the run. The API key never leaves the client: every
detail and log line goes through a Redactor.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time

import openai

from annotators.ledger import Ledger
from annotators.prompts import (
    MAX_ANSWER_TOKENS,
    PROMPT_VERSION,
    RESPONSE_MODES,
    build_messages,
    estimate_tokens,
    response_format,
)
from annotators.taxonomy import Answer, InvalidAnswer
from annotators.teachers.base import (
    AsyncRateLimiter,
    OnResult,
    Outcome,
    Redactor,
    TeacherError,
    retry_after_seconds,
)
from annotators.teachers.completions import answer_from_completion

log = logging.getLogger(__name__)

PLACEHOLDER_KEY = "no-key"  # self-hosted servers (vLLM, TGI) accept any key; the client needs one
BUDGET_DETAIL = "not sent: its worst case could exceed the budget"


class Transient(Exception):
    """A retryable failure of one request, with the delay the server asked for (if any)."""

    def __init__(self, kind: str, detail: str = "", retry_after: float | None = None):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.retry_after = kind, detail, retry_after


class Rejected(Exception):
    """The server refused this request for good (a 4xx other than 429); the paragraph is dead-lettered."""

    def __init__(self, kind: str, detail: str = "", status: int | None = None):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.status = kind, detail, status


def classify(exc: Exception, redact: Redactor) -> Exception:
    """Map an openai exception to Transient, Rejected or TeacherError (messages redacted)."""
    if isinstance(exc, openai.RateLimitError):
        return Transient("rate_limited", "HTTP 429", retry_after_seconds(exc.response.headers))
    if isinstance(exc, openai.APITimeoutError):
        return Transient("timeout", "request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return Transient("connection_error", redact(type(exc.__cause__ or exc).__name__))
    if isinstance(exc, openai.InternalServerError):
        return Transient("server_error", f"HTTP {exc.status_code}", retry_after_seconds(exc.response.headers))
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return TeacherError(f"the teacher server refused the API key (HTTP {exc.status_code}); check the key")
    if isinstance(exc, openai.NotFoundError):
        return TeacherError(
            f"the teacher server answered 404 (unknown model or wrong base URL): {redact(exc.message)}"
        )
    if isinstance(exc, openai.APIStatusError):
        return Rejected(
            "bad_request", redact(f"HTTP {exc.status_code}: {exc.message}")[:500], exc.status_code
        )
    if isinstance(exc, openai.APIResponseValidationError):
        return Transient("invalid_response", redact(str(exc))[:200])
    return exc


class OpenAITeacher:
    """Chat-completions teacher with bounded concurrency, rate limits, retries and validation."""

    cacheable = True

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        concurrency: int = 16,
        rpm: float | None = None,
        tpm: float | None = None,
        timeout: float = 60.0,
        max_attempts: int = 8,
        max_invalid: int = 3,
        response_mode: str = "json_schema",
        logprobs: bool = True,
        top_logprobs: int = 5,
        temperature: float = 0.0,
        max_tokens: int = MAX_ANSWER_TOKENS,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        prompt_version: str = PROMPT_VERSION,
        progress: bool = False,
        seed: int = 0,
        http_backend: str = "aiohttp",
    ):
        if not model:
            raise ValueError("the openai teacher needs --model")
        if response_mode not in RESPONSE_MODES:
            raise ValueError(f"response_mode must be one of {RESPONSE_MODES}")
        if api_key is None and (base_url is None or "api.openai.com" in base_url):
            raise TeacherError(
                "no API key: set OPENAI_API_KEY or BIOMED_ENRICH_API_KEY, or pass --api-key-file"
            )
        self.model, self.base_url, self.prompt_version = model, base_url, prompt_version
        self._api_key = api_key or PLACEHOLDER_KEY
        self.redact = Redactor(api_key)
        self.concurrency, self.rpm, self.tpm, self.timeout = concurrency, rpm, tpm, timeout
        self.max_attempts, self.max_invalid = max_attempts, max_invalid
        self.mode, self.logprobs, self.top_logprobs = response_mode, logprobs, top_logprobs
        self.temperature, self.max_tokens = temperature, max_tokens
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.progress = progress
        self.http_backend = http_backend
        self._random = random.Random(seed)
        self._feature_lock = threading.Lock()

    def __getstate__(self) -> dict:  # picklable for Beam (locks are rebuilt on the worker)
        state = dict(self.__dict__)
        state.pop("_feature_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._feature_lock = threading.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"OpenAITeacher(model={self.model!r}, base_url={self.base_url!r})"

    # -- request construction and feature fallback -------------------------------------------------
    def request_kwargs(self, messages: list[dict]) -> dict:
        kw = {
            "model": self.model,
            "messages": messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        fmt = response_format(self.mode)
        if fmt:
            kw["response_format"] = fmt
        if self.logprobs:
            kw["logprobs"] = True
            kw["top_logprobs"] = self.top_logprobs
        return kw

    def downgrade(self, sent: dict, error: Rejected) -> bool:
        """After a 400, drop the feature the server may not support (logprobs, then structured output).

        Compare-and-set on what the failed request used, so a burst of 400s downgrades one step each.
        """
        message = error.detail.lower()
        if "context" in message or "too long" in message or "maximum" in message:
            return False  # the input is the problem, not a feature
        sent_mode = (sent.get("response_format") or {}).get("type", "plain")
        with self._feature_lock:
            if (sent.get("logprobs") and not self.logprobs) or sent_mode != self.mode:
                return True  # another request already downgraded: retry with the current settings
            blames_format = "response_format" in message or "json_schema" in message
            if self.logprobs and ("logprob" in message or not blames_format):
                self.logprobs = False
            elif self.mode != "plain":
                self.mode = RESPONSE_MODES[RESPONSE_MODES.index(self.mode) + 1]
            else:
                return False
            log.warning(
                "teacher server rejected a request (%s); now mode=%s logprobs=%s",
                error.detail[:120],
                self.mode,
                self.logprobs,
            )
            return True

    def client(self) -> openai.AsyncOpenAI:
        """The async client; on aiohttp's transport when installed (openai's `DefaultAioHttpClient`).

        aiohttp costs a fraction of httpx's CPU per request, which is what bounds a single client
        process near a server's capacity; httpx is the fallback.
        """
        http_client = None
        if self.http_backend == "aiohttp":
            try:
                http_client = openai.DefaultAioHttpClient(timeout=self.timeout)
            except RuntimeError:  # the aiohttp extra is not installed
                http_client = None
        return openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.base_url,
            max_retries=0,
            timeout=self.timeout,
            http_client=http_client,
        )

    def sync_client(self) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=self._api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout
        )

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max_s * 4)
        return min(self.backoff_max_s, self.backoff_s * 2**attempt) * (0.5 + self._random.random() / 2)

    # -- one attempt (shared with the Beam model handler) ------------------------------------------
    def interpret(self, body: dict) -> Answer:
        return answer_from_completion(body)

    async def attempt(self, client: openai.AsyncOpenAI, messages: list[dict], ledger: Ledger) -> Answer:
        """One request: an Answer, or raises Transient / Rejected / InvalidAnswer / TeacherError."""
        kw = self.request_kwargs(messages)
        start = time.monotonic()
        try:
            # the client's documented low-level `post`: its auth, errors and timeouts, without the typed
            # request/response models (a few ms of CPU per call; we validate the dict ourselves)
            body = await client.post("/chat/completions", body=kw, cast_to=object)
        except openai.OpenAIError as exc:
            err = classify(exc, self.redact)
            ledger.record_call(time.monotonic() - start, error=getattr(err, "kind", "fatal"))
            if isinstance(err, Rejected) and err.status == 400 and self.downgrade(kw, err):
                raise Transient("feature_unsupported", err.detail, 0.0) from None
            raise err from None
        except (ValueError, TypeError) as exc:  # a 200 whose body is not JSON / not a completion
            ledger.record_call(time.monotonic() - start, error="invalid_response")
            raise Transient("invalid_response", type(exc).__name__) from None
        if not isinstance(body, dict):
            ledger.record_call(time.monotonic() - start, error="invalid_response")
            raise Transient("invalid_response", f"not a JSON object: {str(body)[:80]}")
        usage = body.get("usage") or {}
        try:
            answer = self.interpret(body)
        except InvalidAnswer as e:
            ledger.record_call(
                time.monotonic() - start, usage.get("prompt_tokens"), usage.get("completion_tokens"), e.reason
            )
            raise
        ledger.record_call(time.monotonic() - start, answer.input_tokens, answer.output_tokens)
        return answer

    # -- a whole list, concurrently ---------------------------------------------------------------
    async def _one(self, client, sem, limiter, row: dict, ledger: Ledger) -> Outcome:
        messages = build_messages(row, self.prompt_version)
        prompt = estimate_tokens(messages)
        estimate = prompt + self.max_tokens
        transient = invalid = 0
        while True:
            delay = 0.0
            async with sem:
                await limiter.acquire(estimate)
                if not ledger.reserve(prompt, self.max_tokens):
                    return Outcome(reason="budget_exhausted", detail=BUDGET_DETAIL)
                try:
                    return Outcome(await self.attempt(client, messages, ledger))
                except Transient as e:
                    if e.kind != "feature_unsupported":
                        transient += 1
                    if transient >= self.max_attempts:
                        return Outcome(
                            reason=e.kind, detail=f"gave up after {transient} attempts: {e.detail}"
                        )
                    delay = self.backoff(transient - 1, e.retry_after)
                except InvalidAnswer as e:
                    invalid += 1
                    if invalid > self.max_invalid:
                        return Outcome(reason=e.reason, detail=self.redact(e.detail)[:500])
                except Rejected as e:
                    return Outcome(reason=e.kind, detail=e.detail)
                finally:
                    ledger.release(prompt, self.max_tokens)
            ledger.record_retry()
            if delay:
                await asyncio.sleep(delay)

    async def _label_all(self, rows: list[dict], ledger: Ledger, on_result: OnResult | None) -> list[Outcome]:
        from tqdm.auto import tqdm

        client = self.client()
        sem = asyncio.Semaphore(self.concurrency)
        limiter = AsyncRateLimiter(self.rpm, self.tpm)
        outcomes: list[Outcome | None] = [None] * len(rows)

        async def run(i: int, row: dict) -> None:
            outcomes[i] = await self._one(client, sem, limiter, row, ledger)
            if on_result:
                on_result(i, outcomes[i])

        tasks = [asyncio.ensure_future(run(i, row)) for i, row in enumerate(rows)]
        try:
            with tqdm(
                total=len(tasks), desc=f"annotate ({self.model})", unit="para", disable=not self.progress
            ) as bar:
                for fut in asyncio.as_completed(tasks):
                    await fut
                    bar.update()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()
        return outcomes  # type: ignore[return-value]

    def label(self, rows: list[dict], ledger: Ledger, on_result: OnResult | None = None) -> list[Outcome]:
        """Label `rows` (dicts with text, section_title, path); one Outcome per row, in order."""
        if not rows:
            return []
        coro_factory = lambda: self._label_all(rows, ledger, on_result)  # noqa: E731
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(coro_factory())
        result: dict = {}  # called from inside an event loop (a notebook): run ours in a thread

        def target() -> None:
            try:
                result["v"] = asyncio.run(coro_factory())
            except BaseException as e:  # noqa: BLE001
                result["e"] = e

        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
        if "e" in result:
            raise result["e"]
        return result["v"]
