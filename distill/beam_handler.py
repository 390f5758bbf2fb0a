"""A Beam RunInference model handler for the student: rows with `text` in, released label columns out.

Why `ModelHandler` directly: Beam's PyTorch/Hugging Face keyed-tensor handlers expect examples that are
already tokenised to one common shape (they stack them), which would force padding to a fixed
length and tokenising outside the overlapped, length-sorted path of `distill.inference.Scorer`.
This handler keeps everything else Beam offers: BatchElements batching (weighted by approximate
token count), `share_model_across_processes` (one model per machine on GPU workers via
`large_model`/`model_copies`), RunInference metrics, `with_exception_handling()` dead letters.

Note on Beam 2.77: `ModelHandler(max_batch_weight=...)` is forwarded to `beam.BatchElements`, which
does not accept it (TypeError), so batches are weighted through `element_size_fn` with
`min/max_batch_size` in token units instead. `batch_length_fn` + `batch_bucket_boundaries` only act on
the stateful path (`max_batch_duration_secs`, streaming); they are set when that path is used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from distill.inference import InferenceOptions, Scorer, load_scorer

METRICS_NAMESPACE = "biomed_enrich_propagate"
# Characters per wordpiece on PMC paragraphs (measured on the teacher-labelled sample: ~4.6).
CHARS_PER_TOKEN = 4


def approx_tokens(row: dict, max_seq_length: int = 512) -> int:
    """A cheap token-count estimate (no tokenizer on the batching path), capped at the truncation length."""
    text = row.get("text") or ""
    return max(2, min(max_seq_length, len(text) // CHARS_PER_TOKEN + 2))


def _student_fields(row: dict) -> dict:
    """The columns the student may read (sent alone through a shared model's cross-process proxy)."""
    return {k: row.get(k) for k in ("text", "section_title", "path")}


class StudentModelHandler(ModelHandler[dict, PredictionResult, Scorer]):
    """Scores dict rows (any columns, `text` required); the prediction is the label-columns dict."""

    def __init__(
        self,
        model_dir: str,
        options: InferenceOptions = InferenceOptions(),
        *,
        min_batch_tokens: int = 16_384,
        max_batch_tokens: int = 262_144,
        max_batch_duration_secs: int | None = None,
        large_model: bool = False,
        model_copies: int | None = None,
        progress_total: int | None = None,
        **kwargs: Any,
    ):
        max_len = options.max_seq_length or 512
        size_fn = _SizeFn(max_len)
        batching: dict[str, Any] = {"min_batch_size": min_batch_tokens, "max_batch_size": max_batch_tokens}
        if max_batch_duration_secs is not None:  # stateful (streaming) path: bucket by length instead
            batching.update(
                max_batch_duration_secs=max_batch_duration_secs,
                batch_length_fn=size_fn,
                batch_bucket_boundaries=[32, 64, 128, 256, 384, max_len],
            )
        super().__init__(large_model=large_model, model_copies=model_copies, **batching, **kwargs)
        if max_batch_duration_secs is None:
            self._batching_kwargs["element_size_fn"] = size_fn
        self._model_dir = model_dir
        self._options = options
        self._progress_total = progress_total
        self._progress = None
        self._scored = Metrics.counter(METRICS_NAMESPACE, "paragraphs_scored")
        self._tokens = Metrics.counter(METRICS_NAMESPACE, "tokens")
        self._truncated = Metrics.counter(METRICS_NAMESPACE, "truncated_paragraphs")
        self._precision = Metrics.string_set(METRICS_NAMESPACE, "precision")

    def load_model(self) -> Scorer:
        self.set_environment_vars()
        from pipelines.core.staging import local_model  # a bucket URI: staged once per worker process

        return load_scorer(local_model(self._model_dir), self._options)

    def run_inference(
        self, batch: Sequence[dict], model: Scorer, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        # A model shared across processes is a proxy: one method call, no callables passed through it.
        progress = None if self.share_model_across_processes() else self._tick()
        out = model.score_rows([_student_fields(row) for row in batch], progress)
        self._scored.inc(len(batch))
        self._tokens.inc(out["tokens"])
        self._truncated.inc(out["truncated"])
        if out.get("precision"):
            self._precision.add(out["precision"])
        if progress is None and self._progress_total is not None:
            self._tick()(len(batch))
        return [
            PredictionResult(row, p, out["model_id"])
            for row, p in zip(batch, out["predictions"], strict=True)
        ]

    def _tick(self) -> Callable[[int], None] | None:
        """A tqdm bar (paragraphs/s, ETA) for local runs; runners get the counters instead."""
        if self._progress_total is None:
            return None
        if self._progress is None:
            from tqdm.auto import tqdm

            self._progress = tqdm(total=self._progress_total, unit="para", desc="propagate", smoothing=0.1)
        return self._progress.update

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        return sum(len(row.get("text") or "") for row in batch)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_progress"] = None  # a bar is per process
        return state


class _SizeFn:
    """Picklable `approx_tokens` bound to a truncation length."""

    def __init__(self, max_seq_length: int):
        self.max_seq_length = max_seq_length

    def __call__(self, row: dict) -> int:
        return approx_tokens(row, self.max_seq_length)
