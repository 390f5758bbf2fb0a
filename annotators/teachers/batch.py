"""The Batch API teacher: request JSONL -> upload -> batch -> poll -> ingest (half the price of live calls).

Submissions are recorded in `<workdir>/batch_state.json` keyed by the sha256 of each request
file, so a rerun of an interrupted job resumes polling the batches it already paid for instead of
submitting them again. Answers are validated exactly like live ones; invalid answers and failed
requests go into a follow-up batch, up to `max_rounds`, then are dead-lettered with the reason.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time

import openai

from annotators.cache import text_sha256
from annotators.ledger import Ledger
from annotators.prompts import build_messages, estimate_tokens
from annotators.taxonomy import InvalidAnswer
from annotators.teachers.base import OnResult, Outcome, TeacherError
from annotators.teachers.completions import answer_from_completion
from annotators.teachers.openai_chat import BUDGET_DETAIL, OpenAITeacher, Rejected, Transient, classify

log = logging.getLogger(__name__)

TERMINAL = {"completed", "failed", "expired", "cancelled"}


class BatchTeacher(OpenAITeacher):
    """OpenAI Batch API backend (same request bodies and validation as the live `openai` teacher)."""

    price_factor = 0.5  # Batch API list prices are half the live ones

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        workdir: str = "batch",
        poll_interval_s: float = 30.0,
        max_wait_s: float = 26 * 3600,
        max_rounds: int = 3,
        max_requests_per_batch: int = 50_000,
        completion_window: str = "24h",
        **kw,
    ):
        super().__init__(model, base_url, api_key, **kw)
        self.workdir, self.poll_interval_s, self.max_wait_s = workdir, poll_interval_s, max_wait_s
        self.max_rounds, self.max_requests_per_batch = max_rounds, max_requests_per_batch
        self.completion_window = completion_window
        self._state_path = os.path.join(workdir, "batch_state.json")

    def __repr__(self) -> str:
        return f"BatchTeacher(model={self.model!r}, base_url={self.base_url!r})"

    # -- state -------------------------------------------------------------------------------------
    def _state(self) -> dict:
        if os.path.exists(self._state_path):
            with open(self._state_path, encoding="utf-8") as f:
                return json.load(f)
        return {}

    def _save_state(self, state: dict) -> None:
        tmp = self._state_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f, indent=2, sort_keys=True)
        os.replace(tmp, self._state_path)

    def _call(self, fn, *args, **kw):
        """One API call with the live teacher's transient-error retries; fatal errors stop the run."""
        for attempt in range(self.max_attempts):
            try:
                return fn(*args, **kw)
            except openai.OpenAIError as exc:
                err = classify(exc, self.redact)
                if isinstance(err, Transient) and attempt + 1 < self.max_attempts:
                    time.sleep(self.backoff(attempt, err.retry_after))
                    continue
                if isinstance(err, (Transient, Rejected)):
                    raise TeacherError(f"Batch API call failed: {err.kind}: {err.detail}") from None
                raise err from None
        raise AssertionError("unreachable")

    # -- one batch ---------------------------------------------------------------------------------
    def write_requests(self, rows: list[dict], ids: list[str], path: str) -> str:
        """Write the Batch API request JSONL for `rows`; returns the file's sha256."""
        digest = hashlib.sha256()
        with open(path, "w", encoding="utf-8") as f:
            for custom_id, row in zip(ids, rows, strict=True):
                body = self.request_kwargs(build_messages(row, self.prompt_version))
                line = json.dumps(
                    {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body},
                    ensure_ascii=False,
                    sort_keys=True,
                )
                f.write(line + "\n")
                digest.update(line.encode())
        return digest.hexdigest()

    def run_batch(self, client: openai.OpenAI, path: str, digest: str) -> tuple[str, dict, list[dict]]:
        """Submit (or resume) the batch of request file `path`; wait; (status, results by id, errors)."""
        state = self._state()
        batch_id = state.get(digest)
        if batch_id is None:
            with open(path, "rb") as f:
                uploaded = self._call(client.files.create, file=f, purpose="batch")
            batch = self._call(
                client.batches.create,
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window=self.completion_window,
                metadata={"source": "biomed-enrich annotate"},
            )
            batch_id = batch.id
            state[digest] = batch_id
            self._save_state(state)
            log.info("submitted batch %s (%s)", batch_id, os.path.basename(path))
        else:
            log.info("resuming batch %s (%s)", batch_id, os.path.basename(path))
        deadline = time.monotonic() + self.max_wait_s
        while True:
            batch = self._call(client.batches.retrieve, batch_id)
            if batch.status in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise TeacherError(
                    f"batch {batch_id} still {batch.status} after {self.max_wait_s:.0f}s; rerun to resume"
                )
            time.sleep(self.poll_interval_s)
        results, errors = {}, []
        if batch.output_file_id:
            for line in self._call(client.files.content, batch.output_file_id).text.splitlines():
                if line.strip():
                    item = json.loads(line)
                    results[item["custom_id"]] = item
        if batch.error_file_id:
            errors = [
                json.loads(x)
                for x in self._call(client.files.content, batch.error_file_id).text.splitlines()
                if x
            ]
        return batch.status, results, errors

    # -- budget ------------------------------------------------------------------------------------
    def _estimate(self, row: dict) -> tuple[int, int]:
        return estimate_tokens(build_messages(row, self.prompt_version)), self.max_tokens

    def _affordable(self, rows: list[dict], chunk: list[int], ledger: Ledger) -> list[int]:
        """The rows of `chunk` whose worst-case tokens fit the ledger's budget (reserved until ingested)."""
        return [i for i in chunk if ledger.reserve(*self._estimate(rows[i]))]

    # -- the teacher interface -----------------------------------------------------------------------
    def label(self, rows: list[dict], ledger: Ledger, on_result: OnResult | None = None) -> list[Outcome]:
        os.makedirs(self.workdir, exist_ok=True)
        client = self.sync_client()
        outcomes: list[Outcome | None] = [None] * len(rows)
        last_failure: dict[int, Outcome] = {}
        pending = list(range(len(rows)))
        for round_no in range(self.max_rounds):
            if not pending:
                break
            retry: list[int] = []
            for start in range(0, len(pending), self.max_requests_per_batch):
                wanted = pending[start : start + self.max_requests_per_batch]
                chunk = self._affordable(rows, wanted, ledger)
                for i in sorted(set(wanted) - set(chunk)):
                    outcomes[i] = Outcome(reason="budget_exhausted", detail=BUDGET_DETAIL)
                    if on_result:
                        on_result(i, outcomes[i])
                if not chunk:
                    continue
                ids = [f"{i}-{text_sha256(rows[i]['text'])[:16]}" for i in chunk]
                path = os.path.join(
                    self.workdir, f"requests-r{round_no}-{start // self.max_requests_per_batch:05d}.jsonl"
                )
                digest = self.write_requests([rows[i] for i in chunk], ids, path)
                began = time.monotonic()
                status, results, errors = self.run_batch(client, path, digest)
                took = time.monotonic() - began
                error_by_id = {e.get("custom_id"): e for e in errors}
                for i in chunk:
                    ledger.release(*self._estimate(rows[i]))
                for i, custom_id in zip(chunk, ids, strict=True):
                    outcome = self._ingest(
                        results.get(custom_id), error_by_id.get(custom_id), status, ledger, took
                    )
                    if outcome.ok or outcome.reason in ("bad_request",):
                        outcomes[i] = outcome
                        if on_result:
                            on_result(i, outcome)
                    else:
                        last_failure[i] = outcome
                        retry.append(i)
            if retry:
                ledger.retries += len(retry)
            pending = retry
        for i in pending:
            outcomes[i] = last_failure[i]
            if on_result:
                on_result(i, outcomes[i])
        return outcomes  # type: ignore[return-value]

    def _ingest(
        self, item: dict | None, error: dict | None, status: str, ledger: Ledger, took: float
    ) -> Outcome:
        if item is None:
            detail = (
                json.dumps((error or {}).get("error") or error or {})[:300] if error else f"batch {status}"
            )
            return Outcome(reason="batch_" + (status if status != "completed" else "missing"), detail=detail)
        response = item.get("response") or {}
        if item.get("error") or response.get("status_code", 200) >= 400:
            code = response.get("status_code")
            ledger.record_call(took, error=f"http_{code}")
            reason = "bad_request" if code and 400 <= code < 500 and code != 429 else "server_error"
            return Outcome(
                reason=reason, detail=self.redact(json.dumps(item.get("error") or response.get("body"))[:300])
            )
        body = response.get("body") or {}
        try:
            answer = answer_from_completion(body)
        except InvalidAnswer as e:
            usage = body.get("usage") or {}
            ledger.record_call(took, usage.get("prompt_tokens"), usage.get("completion_tokens"), e.reason)
            return Outcome(reason=e.reason, detail=self.redact(e.detail)[:300])
        ledger.record_call(took, answer.input_tokens, answer.output_tokens)
        return Outcome(answer)
