"""The annotate stage as a Beam pipeline: RunInference over a RemoteModelHandler that calls the teacher.

Built the way Beam's own OpenAI handler is (later Beam releases' `openai_inference.py`): the client
is created in `create_client`, each batch is one `request`, the openai client's retries are off
(max_retries=0) and Beam's RemoteModelHandler does the retrying (exponential backoff on the
exceptions `retry_filter` accepts) and the client-side adaptive throttling. Answers already in the
durable cache are not requested again, so a retried batch pays only for what failed. Invalid
answers are re-asked a few times inside `request`, then become dead letters; batches that still
fail after Beam's retries come out of RunInference's dead-letter output.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import PredictionResult, RemoteModelHandler, RunInference

from annotators.cache import AnswerCache, cache_key
from annotators.labels import STAGE, label_row, paragraph_dead_letter
from annotators.ledger import Ledger
from annotators.prompts import build_messages
from annotators.taxonomy import InvalidAnswer
from annotators.teachers.base import Outcome, TeacherError
from annotators.teachers.openai_chat import OpenAITeacher, Rejected, Transient
from pipelines.core.dead_letters import WriteDeadLetters, count_dead_letters
from pipelines.core.io import WriteDataset, read_table
from pipelines.core.options import pipeline_options
from pipelines.core.schemas import LABELS

NAMESPACE = "biomed_enrich_annotate"
LEDGER_COUNTERS = ("calls", "input_tokens", "output_tokens", "errors")


def report_ledger(ledger: Ledger) -> None:
    """Add a worker-side ledger to Beam counters (summed over workers into the run's ledger)."""
    from apache_beam.metrics import Metrics

    values = {
        "calls": ledger.calls,
        "input_tokens": ledger.input_tokens,
        "output_tokens": ledger.output_tokens,
        "errors": sum(ledger.errors.values()),
    }
    for name, value in values.items():
        if value:
            Metrics.counter(NAMESPACE, name).inc(value)


def read_ledger(result: Any, ledger: Ledger) -> None:
    """Fill the driver's ledger from the Beam counters of a finished pipeline (latencies stay per worker)."""
    from apache_beam.metrics.metric import MetricsFilter

    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        name, value = counter.key.metric.name, counter.committed or counter.attempted or 0
        if name in ("calls", "input_tokens", "output_tokens"):
            setattr(ledger, name, getattr(ledger, name) + value)
        elif name == "errors":
            ledger.errors["beam_worker_errors"] += value


# Retries inside one batch before it goes to Beam's exponential backoff, whose first wait is seconds:
# far longer than a typical 429's Retry-After, and it repeats the whole batch
QUICK_RETRIES = 3
QUICK_RETRY_MAX_S = 10.0


def retryable(exc: Exception) -> bool:
    """Beam retries transient teacher failures (429, 5xx, timeouts), never a bad key or a bad request."""
    return isinstance(exc, Transient)


class _Client:
    """What `create_client` returns (Beam's shared-model registry needs a weak-referenceable object)."""

    def __init__(self, teacher: Any, cache: AnswerCache | None):
        self.teacher, self.cache = teacher, cache


class TeacherModelHandler(RemoteModelHandler[dict, PredictionResult, Any]):
    """RunInference handler: paragraph rows in, PredictionResult(row, Outcome) out."""

    def __init__(
        self,
        teacher: Any,
        cache_path: str | None = None,
        *,
        max_batch_size: int = 16,
        num_retries: int = 5,
        throttle_delay_secs: int = 5,
    ):
        super().__init__(
            namespace=NAMESPACE,
            num_retries=num_retries,
            throttle_delay_secs=throttle_delay_secs,
            retry_filter=retryable,
        )
        self.teacher = teacher
        self.cache_path = cache_path
        self.max_batch_size = max_batch_size

    def create_client(self) -> _Client:
        cache = AnswerCache(self.cache_path) if self.cache_path and self.teacher.cacheable else None
        return _Client(self.teacher, cache)

    def batch_elements_kwargs(self) -> dict:
        return {"min_batch_size": 1, "max_batch_size": self.max_batch_size}

    def request(self, batch: Sequence[dict], model: Any, inference_args: dict | None = None) -> Iterable[Any]:
        teacher, cache = model.teacher, model.cache
        if not isinstance(teacher, OpenAITeacher):  # replay: local lookups, nothing to retry
            return [
                PredictionResult(r, o)
                for r, o in zip(batch, teacher.label(list(batch), Ledger()), strict=True)
            ]
        keys = [cache_key(teacher.model, teacher.prompt_version, r["text"]) for r in batch]
        cached = cache.get_many(keys) if cache else {}
        outcomes: dict[str, Outcome] = {k: Outcome(a) for k, a in cached.items()}
        todo = {k: r for k, r in zip(keys, batch, strict=True) if k not in outcomes}
        results = asyncio.run(self._ask_all(teacher, list(todo.values())))
        transient = None
        for key, result in zip(todo, results, strict=True):
            if isinstance(result, Transient):
                transient = transient or result
            elif isinstance(result, TeacherError):
                raise result
            else:
                outcomes[key] = result
                if cache and result.ok:
                    cache.put(key, result.answer, teacher.model, teacher.prompt_version)
        if transient is not None:
            raise transient  # Beam backs off and retries the batch; answered rows come from the cache
        return [PredictionResult(r, outcomes[k]) for k, r in zip(keys, batch, strict=True)]

    @staticmethod
    async def _ask_all(teacher: OpenAITeacher, rows: list[dict]) -> list[Any]:
        client = teacher.client()
        ledger = Ledger()
        try:
            return await TeacherModelHandler._gather(teacher, client, ledger, rows)
        finally:
            await client.close()
            report_ledger(ledger)

    @staticmethod
    async def _gather(teacher: OpenAITeacher, client: Any, ledger: Ledger, rows: list[dict]) -> list[Any]:

        async def ask(row: dict) -> Any:
            messages = build_messages(row, teacher.prompt_version)
            invalid = waited = 0
            while True:
                try:
                    return Outcome(await teacher.attempt(client, messages, ledger))
                except InvalidAnswer as e:
                    invalid += 1
                    if invalid > teacher.max_invalid:
                        return Outcome(reason=e.reason, detail=teacher.redact(e.detail)[:500])
                except Rejected as e:
                    return Outcome(reason=e.kind, detail=e.detail)
                except Transient as e:
                    # a few short waits here (the teacher's backoff, Retry-After when the server sends
                    # one); past them Beam's backoff retries the batch, answered rows from the cache
                    delay = teacher.backoff(waited, e.retry_after)
                    if waited >= QUICK_RETRIES or delay > QUICK_RETRY_MAX_S:
                        return e
                    waited += 1
                    ledger.record_retry()
                    await asyncio.sleep(delay)
                except TeacherError as e:
                    return e

        return await asyncio.gather(*(ask(r) for r in rows))


class AnnotateParagraphs(beam.PTransform):
    """Paragraph dicts -> {'labels': LABELS dicts, 'dead': dead-letter dicts} via RunInference."""

    def __init__(self, teacher: Any, cache_path: str | None = None, **handler_kw: Any):
        super().__init__()
        self.handler = TeacherModelHandler(teacher, cache_path, **handler_kw)
        self.model, self.version = teacher.model, teacher.prompt_version

    def expand(self, rows):
        model, version = self.model, self.version

        def split(result: PredictionResult):
            row, outcome = result.example, result.inference
            if outcome.ok:
                yield label_row(row, outcome.answer, model, version)
            else:
                yield beam.pvalue.TaggedOutput(
                    "dead", paragraph_dead_letter(row, outcome.reason or "unknown", outcome.detail)
                )

        def failed(item):
            batch, error = item
            detail = str(error[1] if isinstance(error, tuple) and len(error) > 1 else error)[:300]
            reason = getattr(error, "kind", None) or "teacher_failed"
            return [paragraph_dead_letter(r, reason, detail) for r in batch]

        main, other = rows | "Label" >> RunInference(self.handler).with_exception_handling()
        outputs = main | "Split" >> beam.FlatMap(split).with_outputs("dead", main="labels")
        failures = other.failed_inferences | "Failed batches" >> beam.FlatMap(failed)
        dead = (outputs.dead, failures) | "All dead letters" >> beam.Flatten()
        return {"labels": outputs.labels, "dead": dead}


def run_beam_annotate(
    rows: list[dict],
    output: str,
    teacher: Any,
    *,
    cache_path: str | None = None,
    beam_args: list[str] | None = None,
    ledger: Ledger | None = None,
) -> dict:
    """Label `rows` in a Beam pipeline; write `<output>/labels/` and dead letters; return counts."""
    p = beam.Pipeline(options=pipeline_options(beam_args))
    out = (
        p
        | "Paragraphs" >> beam.Create(rows, reshuffle=False)
        | "Annotate" >> AnnotateParagraphs(teacher, cache_path)
    )
    out["labels"] | WriteDataset(output, "labels", LABELS)
    out["dead"] | WriteDeadLetters(output, STAGE)
    result = p.run()
    result.wait_until_finish()
    if ledger is not None:
        read_ledger(result, ledger)
    labels = read_table([FileSystems.join(output, "labels")], columns=["id"]).num_rows
    reasons = count_dead_letters(output, STAGE)
    return {"labelled": labels, "dead_letter_reasons": dict(reasons)}


__all__ = ["AnnotateParagraphs", "TeacherModelHandler", "run_beam_annotate"]
