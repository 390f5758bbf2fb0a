"""Fast batch inference for the student: the same answers as a plain fp32 loop, several times cheaper.

Where the speed comes from (each option is measured in `benchmarks/propagate.py`, see docs/propagate.md):

- Token-budget batches: paragraphs are tokenised without padding, sorted by token length and cut into
  batches of at most `batch_tokens` padded tokens, so a batch pads only to its own longest paragraph
  (never to 512). Answers come back in input order.
- Truncation policy: head truncation to `max_seq_length` tokens including [CLS]/[SEP] (the model
  config's value, 512 by default), exactly as the tokenizer truncates at training time. Very long texts
  are first clipped at a whitespace boundary far past what 512 tokens can span, and re-tokenised in
  full when the clipped text does not fill the budget, so clipping never changes an answer.
- Tokenisation overlapped with compute: a background thread tokenises and collates the next chunk
  while the model runs (the Rust tokenizer releases the GIL).
- Precision: fp32 unless this process measured bf16 to be both faster and label-preserving. `auto`
  on a device with native bf16 (CUDA, AVX512-BF16/AMX CPUs) times fp32 and bf16 on the first real
  texts it scores and keeps bf16 only if it is faster and agrees on >= 99.5 % of labels; everywhere
  else (bf16 emulated) it is fp32. bf16 runs an encoder whose weights were cast once, not per batch.
  int8 quantisation runs in fp32. SDPA attention is the default.
- Optional: int8 dynamic quantisation of Linear layers (CPU only) and `torch.compile`. A model directory
  holding a static int8 encoder (`distill.int8`) runs it on CPU, in fp32 around it.
- On CUDA: pinned host memory and non-blocking copies.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from distill.inputs import student_input
from distill.int8 import has_int8_encoder, int8_files, is_int8, use_int8_encoder

PRECISIONS = ("auto", "fp32", "bf16")
# `auto` keeps bf16 only if it agrees with fp32 on at least this share of labels (each head) ...
MIN_BF16_AGREEMENT = 0.995
# ... measured on up to this many of the first texts scored (once per model and device per process).
CALIBRATION_TEXTS = 256
# "1"/"0" overrides the native-bf16 probe: simulates a bf16 CPU (tests) or forbids bf16 calibration.
NATIVE_BF16_ENV = "BIOMED_ENRICH_NATIVE_BF16"
# Padded tokens per forward pass: small on CPU (less padding, matmuls already efficient; measured in
# benchmarks/propagate.py), large on GPU (fills the device; MiniLM activations are small).
DEFAULT_BATCH_TOKENS = {"cpu": 4096, "cuda": 65536}
# A wordpiece token never spans more characters than this on real text; clipping further out than
# max_seq_length * CLIP_CHARS_PER_TOKEN characters is always checked (see `tokenize`).
CLIP_CHARS_PER_TOKEN = 16


@dataclass(frozen=True)
class InferenceOptions:
    """How to run the student. Defaults are the fastest measured setting that keeps answers."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto: fp32 unless bf16 measured faster and label-preserving (see top)
    quantize: bool = False  # int8 dynamic quantisation of Linear layers (CPU only)
    compile: bool = False  # torch.compile the encoder (dynamic shapes)
    batch_tokens: int | None = None  # padded tokens per forward pass; None: DEFAULT_BATCH_TOKENS[device type]
    max_batch_size: int = 512  # paragraphs per forward pass, whatever their length
    max_seq_length: int | None = None  # None: the model config's max_seq_length
    chunk_size: int = 1024  # paragraphs tokenised (and length-sorted) together
    prefetch: int = 2  # chunks tokenised ahead of the model
    # bf16 runs use a copy of the encoder cast to bf16 once; False: autocast alone re-casts every fp32
    # weight on every batch (the earlier path, kept to measure against in benchmarks/propagate.py)
    cast_weights: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.quantize and self.precision == "bf16":
            raise ValueError("--quantize runs int8 kernels in fp32: use --precision fp32 or auto with it")
        if (
            (self.batch_tokens is not None and self.batch_tokens < 1)
            or self.max_batch_size < 1
            or self.chunk_size < 1
        ):
            raise ValueError("batch_tokens, max_batch_size and chunk_size must be positive")


# ---------------------------------------------------------------------------------------- devices


def select_device(device: str = "auto", *, cuda_available: bool | None = None) -> torch.device:
    """`auto` picks CUDA when a usable GPU is present, else CPU; explicit CUDA without a GPU is an error."""
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    if device == "auto":
        return torch.device("cuda" if available else "cpu")
    chosen = torch.device(device)
    if chosen.type == "cuda" and not available:
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return chosen


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls run natively (not emulated) on `device`; `BIOMED_ENRICH_NATIVE_BF16` overrides."""
    forced = os.environ.get(NATIVE_BF16_ENV)
    if forced in ("0", "1"):
        return forced == "1"
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


@dataclass(frozen=True)
class PrecisionChoice:
    """The dtype a scorer runs in and why (goes to the run log, propagate_stats.json and counters)."""

    dtype: torch.dtype
    reason: str

    def label(self) -> str:
        return f"{str(self.dtype).replace('torch.', '')}: {self.reason}"


def select_dtype(
    precision: str, device: torch.device, *, native: bool | None = None, quantize: bool = False
) -> PrecisionChoice | None:
    """The precision to run in, or None when `auto` must measure bf16 first (see `choose_precision`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return PrecisionChoice(torch.float32, "requested")
    if quantize:
        if precision == "bf16":
            raise ValueError("int8 dynamic quantisation runs in fp32: use precision fp32 or auto with it")
        return PrecisionChoice(torch.float32, "auto: int8 quantisation runs in fp32")
    if precision == "bf16":
        return PrecisionChoice(torch.bfloat16, "requested")
    if not (native_bf16(device) if native is None else native):
        return PrecisionChoice(torch.float32, f"auto: no native bf16 on {device.type}")
    return None


def choose_precision(fp32_seconds: float, bf16_seconds: float, agreement: float, n: int) -> PrecisionChoice:
    """The `auto` rule: bf16 only if measured faster than fp32 and keeping >= MIN_BF16_AGREEMENT of labels."""
    speed = fp32_seconds / max(bf16_seconds, 1e-9)
    measured = f"{n} texts, bf16 {speed:.2f}x fp32 speed, {agreement:.1%} labels kept"
    if bf16_seconds < fp32_seconds and agreement >= MIN_BF16_AGREEMENT:
        return PrecisionChoice(torch.bfloat16, f"auto: calibrated ({measured})")
    return PrecisionChoice(torch.float32, f"auto: calibrated, bf16 not kept ({measured})")


def label_agreement(config, a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> float:
    """The lowest share of equal labels over the classification heads of two sets of raw outputs."""
    la, lb = labels_from_outputs(config, *a), labels_from_outputs(config, *b)
    if not la:
        return 1.0
    return min(
        float(np.mean([x[head] == y[head] for x, y in zip(la, lb, strict=True)]))
        for head in ("document_type", "domain")
    )


# One calibration per (model, device) per process: every batch after it runs in the same precision.
_CALIBRATED: dict[tuple[str, str], PrecisionChoice] = {}


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Autocast to `dtype` on `device`, or nothing for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Move a collated batch; on CUDA through pinned memory with asynchronous copies."""
    if device.type != "cuda":
        return {k: v.to(device) for k, v in batch.items()}
    return {
        k: (v if v.is_pinned() else v.pin_memory()).to(device, non_blocking=True) for k, v in batch.items()
    }


# ------------------------------------------------------------------------------------ text & tokens


def clean_text(text: object) -> str:
    """A string the tokenizer accepts, whatever came in: None -> "", lone surrogates -> U+FFFD, no NULs."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = str(text)
    if any("\ud800" <= c <= "\udfff" for c in text):
        text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text.replace("\x00", "")


def _clip(text: str, limit: int) -> str | None:
    """`text` cut at the last whitespace before `limit` characters, or None when it needs no (safe) cut."""
    if len(text) <= limit:
        return None
    cut = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit))
    return text[:cut] if cut > 0 else None


def tokenize(tokenizer, texts: Sequence[str], max_seq_length: int) -> list[list[int]]:
    """Token ids of each text, head-truncated to `max_seq_length` (special tokens included), unpadded.

    Texts longer than `max_seq_length * CLIP_CHARS_PER_TOKEN` characters are tokenised from a prefix cut
    at whitespace; the prefix's tokens are a prefix of the full text's tokens (whitespace splits
    pre-tokens), so when the prefix fills the budget the answer is identical, otherwise the full text is
    tokenised again.
    """

    def ids(batch: list[str]) -> list[list[int]]:
        return tokenizer(
            batch,
            truncation=True,
            max_length=max_seq_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]

    limit = max_seq_length * CLIP_CHARS_PER_TOKEN
    clipped = [_clip(t, limit) for t in texts]
    encoded = ids([c if c is not None else t for c, t in zip(clipped, texts, strict=True)])
    redo = [i for i, c in enumerate(clipped) if c is not None and len(encoded[i]) < max_seq_length]
    if redo:
        for i, full in zip(redo, ids([texts[i] for i in redo]), strict=True):
            encoded[i] = full
    return encoded


def token_budget_batches(lengths: Sequence[int], batch_tokens: int, max_batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length whose padded size stays within `batch_tokens`.

    Sorted longest first (so memory peaks on the first batch, not late in a run); a single paragraph
    longer than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        new_width = max(width, lengths[i])
        if current and (new_width * (len(current) + 1) > batch_tokens or len(current) >= max_batch_size):
            batches.append(current)
            current, new_width = [], lengths[i]
        current.append(i)
        width = new_width
    if current:
        batches.append(current)
    return batches


def collate(ids: Sequence[Sequence[int]], pad_id: int, pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids` and `attention_mask` tensors (to the longest, or to `pad_to`)."""
    width = pad_to or max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}


# ------------------------------------------------------------------------------------ predictions


def labels_from_outputs(config, doc: np.ndarray, dom: np.ndarray, score: np.ndarray) -> list[dict]:
    """One dict of released label columns per paragraph, via the reference `distill.predict.logits_to_labels`
    (temperature softmax, argmax in release order, clamped score), so fast and reference paths cannot drift.
    """
    from distill.predict import logits_to_labels

    cols = logits_to_labels(doc, dom, score, config)
    return [
        {
            "document_type": str(cols["document_type"][i]),
            "domain": str(cols["domain"][i]),
            "educational_score": float(cols["educational_score"][i]),
            "document_type_scores": cols["document_type_scores"][i].tolist(),
            "domain_scores": cols["domain_scores"][i].tolist(),
        }
        for i in range(len(cols["educational_score"]))
    ]


# ------------------------------------------------------------------------------------------ scorer


def model_id(model_dir: str | Path) -> str:
    """`<directory name>@<first 12 hex of the weights' sha256>`: names the model and pins its version
    (an int8 encoder beside the weights is part of them)."""
    path = Path(model_dir)
    digest = hashlib.sha256()
    int8 = int8_files(path)  # its `.bin` is the int8 encoder's, not torch weights
    weights = sorted(path.glob("*.safetensors")) or sorted(p for p in path.glob("*.bin") if p not in int8)
    for file in weights + int8:
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return f"{path.resolve().name}@{digest.hexdigest()[:12]}"


class Scorer:
    """A loaded student + tokenizer that scores lists of texts with the options chosen."""

    def __init__(
        self, model, tokenizer, options: InferenceOptions = InferenceOptions(), name: str = "student"
    ):
        self.options = options
        self.device = select_device(options.device)
        int8 = is_int8(model)
        if int8 and (self.device.type != "cpu" or options.quantize):
            raise ValueError("an int8 OpenVINO encoder runs on CPU, without --quantize")
        self.precision = select_dtype(options.precision, self.device, quantize=options.quantize or int8)
        self.max_seq_length = int(options.max_seq_length or model.config.max_seq_length)
        self.batch_tokens = options.batch_tokens or DEFAULT_BATCH_TOKENS.get(self.device.type, 4096)
        self.tokenizer = tokenizer
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.config = model.config
        self.name = name
        model = model.eval()
        if options.quantize:
            if self.device.type != "cpu":
                raise ValueError("int8 dynamic quantisation runs on CPU only")
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        model = model.to(self.device)
        self.model = model
        self.forward: Callable = torch.compile(model, dynamic=True) if options.compile else model
        self._bf16_forward: Callable | None = None
        self.stats = {"paragraphs": 0, "tokens": 0, "padded_tokens": 0, "truncated": 0}

    @property
    def dtype(self) -> torch.dtype | None:
        """The dtype the model runs in; None until `auto` has calibrated on the first texts."""
        return self.precision.dtype if self.precision else None

    def describe(self) -> dict:
        return {
            **asdict(self.options),
            "batch_tokens": self.batch_tokens,
            "device": str(self.device),
            "precision_used": self.precision.label() if self.precision else "auto: not calibrated yet",
        }

    def _calibrate(self, texts: Sequence[str]) -> PrecisionChoice:
        """Time fp32 and bf16 on the first texts and apply `choose_precision` (once per model and device)."""
        key = (self.name, str(self.device))
        if key not in _CALIBRATED:
            sample = list(texts[:CALIBRATION_TEXTS])
            before = dict(self.stats)
            seconds, outputs = {}, {}
            for dtype in (torch.float32, torch.bfloat16):
                self._predict(sample[:8], dtype)  # warm-up: kernel selection is not part of the timing
                started = time.perf_counter()
                outputs[dtype] = self._predict(sample, dtype)
                seconds[dtype] = time.perf_counter() - started
            self.stats = before
            agreement = label_agreement(self.config, outputs[torch.float32], outputs[torch.bfloat16])
            _CALIBRATED[key] = choose_precision(
                seconds[torch.float32], seconds[torch.bfloat16], agreement, len(sample)
            )
        if _CALIBRATED[key].dtype != torch.bfloat16:
            self._bf16_forward = None  # the bf16 copy is not needed
        return _CALIBRATED[key]

    def _forward_in(self, dtype: torch.dtype) -> Callable:
        """The forward pass to run under `dtype` autocast.

        For bf16 it is a copy of the model whose encoder weights are bf16 already: autocast alone casts
        every fp32 weight again on every batch (17 % of the CPU time of the 6-layer default in a
        profile). The copy scored 0.96-1.13x as many paragraphs per CPU-second on an AVX512-BF16 EPYC
        (four runs of benchmarks/propagate.py's frontier: noise around a few per cent at most) and 1.26x
        on an AMX Xeon (docs/propagate.md).
        The heads stay fp32, as under autocast alone; the caller's model is left as it was.
        """
        if dtype != torch.bfloat16 or not self.options.cast_weights:
            return self.forward
        if self._bf16_forward is None:
            model = copy.deepcopy(self.model)
            model.encoder.to(torch.bfloat16)
            self._bf16_forward = torch.compile(model, dynamic=True) if self.options.compile else model
        return self._bf16_forward

    def _prepare(self, texts: Sequence[str]) -> list[tuple[list[int], dict[str, torch.Tensor]]]:
        """Tokenise one chunk and collate its token-budget batches (runs in the prefetch thread)."""
        ids = tokenize(self.tokenizer, [clean_text(t) for t in texts], self.max_seq_length)
        lengths = [len(x) for x in ids]
        batches = token_budget_batches(lengths, self.batch_tokens, self.options.max_batch_size)
        prepared = []
        for batch in batches:
            tensors = collate([ids[i] for i in batch], self.pad_id)
            if self.device.type == "cuda":
                tensors = {k: v.pin_memory() for k, v in tensors.items()}
            prepared.append((batch, tensors))
        self.stats["tokens"] += sum(lengths)
        self.stats["truncated"] += sum(n >= self.max_seq_length for n in lengths)
        return prepared

    def _prefetched(self, texts: Sequence[str]) -> Iterator[tuple[int, list[tuple[list[int], dict]]]]:
        """Chunks prepared by a background thread, `prefetch` ahead of the consumer."""
        size = self.options.chunk_size
        starts = list(range(0, len(texts), size))
        if len(starts) <= 1 or self.options.prefetch < 1:
            for start in starts:
                yield start, self._prepare(texts[start : start + size])
            return
        ready: queue.Queue = queue.Queue(maxsize=self.options.prefetch)
        stop = threading.Event()

        def work() -> None:
            try:
                for start in starts:
                    if stop.is_set():
                        return
                    ready.put((start, self._prepare(texts[start : start + size])))
            except BaseException as exc:  # handed to the consumer, which re-raises it
                ready.put(exc)

        thread = threading.Thread(target=work, name="tokenize-prefetch", daemon=True)
        thread.start()
        try:
            for _ in starts:
                item = ready.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while thread.is_alive():
                with contextlib.suppress(queue.Empty):
                    ready.get_nowait()
                thread.join(timeout=0.05)

    @torch.inference_mode()
    def predict_arrays(self, texts: Sequence[str], progress: Callable[[int], None] | None = None):
        """Raw head outputs (document_type logits, domain logits, score) in input order, as float32 arrays."""
        if self.precision is None and len(texts):
            self.precision = self._calibrate(texts)
        return self._predict(texts, self.dtype or torch.float32, progress)

    def _predict(
        self, texts: Sequence[str], dtype: torch.dtype, progress: Callable[[int], None] | None = None
    ):
        n = len(texts)
        doc = np.zeros((n, len(self.config.document_type_labels)), dtype=np.float32)
        dom = np.zeros((n, len(self.config.domain_labels)), dtype=np.float32)
        score = np.zeros(n, dtype=np.float32)
        forward = self._forward_in(dtype)
        for start, prepared in self._prefetched(texts):
            for batch, tensors in prepared:
                inputs = to_device(tensors, self.device)
                with autocast(self.device, dtype):
                    out = forward(**inputs)
                rows = np.asarray(batch) + start
                doc[rows] = out.document_type_logits.float().cpu().numpy()
                dom[rows] = out.domain_logits.float().cpu().numpy()
                score[rows] = out.educational_score.float().cpu().numpy()
                self.stats["padded_tokens"] += int(tensors["input_ids"].numel())
                if progress is not None:
                    progress(len(batch))
        self.stats["paragraphs"] += n
        return doc, dom, score

    def score(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> list[dict]:
        """The released label columns for each text, in input order."""
        return labels_from_outputs(self.config, *self.predict_arrays(texts, progress))

    def inputs(self, rows: Sequence[Mapping]) -> list[str]:
        """What the student reads for each paragraph row, in the format it was trained with."""
        fmt = getattr(self.config, "input_format", "text")
        return [student_input(row, fmt) for row in rows]

    def score_rows(self, rows: Sequence[Mapping], progress: Callable[[int], None] | None = None) -> dict:
        """`score_batch` of paragraph rows (`text`, and `section_title`/`path` when the model reads them)."""
        return self.score_batch(self.inputs(rows), progress)

    def score_batch(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> dict:
        """`score` plus what this call cost, in one method call (works through Beam's cross-process proxy)."""
        before = dict(self.stats)
        predictions = self.score(texts, progress)
        return {
            "predictions": predictions,
            "model_id": self.name,
            "precision": self.precision.label() if self.precision else None,
            **{k: self.stats[k] - before[k] for k in ("tokens", "padded_tokens", "truncated")},
        }


def load_model(model_dir: str | Path, *, int8: bool = False):
    """The student and its tokenizer from a `save_pretrained` directory; `int8`: with the directory's
    int8 OpenVINO encoder (`distill.int8`, CPU) in place of the torch one."""
    from transformers import AutoTokenizer

    from distill.model import StudentModel

    model = StudentModel.from_pretrained(str(model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if int8:
        model = use_int8_encoder(model, model_dir)
    return model, tokenizer


def load_scorer(model_dir: str | Path, options: InferenceOptions = InferenceOptions()) -> Scorer:
    """A scorer for `model_dir`; a model with an int8 encoder runs it on CPU (torch weights on CUDA)."""
    int8 = (
        has_int8_encoder(model_dir) and select_device(options.device).type == "cpu" and not options.quantize
    )
    model, tokenizer = load_model(model_dir, int8=int8)
    return Scorer(model, tokenizer, options, name=model_id(model_dir))


# ------------------------------------------------------------------------------- reference (naive)


@torch.inference_mode()
def reference_predict_arrays(
    model, tokenizer, texts: Sequence[str], *, batch_size: int = 32, pad_to_max: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plain loop the fast path must agree with: fp32, input order, fixed batches, padded to 512.

    `pad_to_max=False` pads each batch to its longest text instead (same answers, cheaper for tests).
    """
    max_len = int(model.config.max_seq_length)
    outs: list[tuple] = []
    for start in range(0, len(texts), batch_size):
        batch = [clean_text(t) for t in texts[start : start + batch_size]]
        enc = tokenizer(
            batch,
            truncation=True,
            max_length=max_len,
            padding="max_length" if pad_to_max else "longest",
            return_tensors="pt",
        )
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
        outs.append((out.document_type_logits, out.domain_logits, out.educational_score))
    return tuple(torch.cat([o[k] for o in outs]).float().numpy() for k in range(3))


def reference_scores(model, tokenizer, texts: Sequence[str], **kw) -> list[dict]:
    return labels_from_outputs(model.config, *reference_predict_arrays(model, tokenizer, texts, **kw))


def with_options(options: InferenceOptions, **changes) -> InferenceOptions:
    """A copy of `options` with some fields changed (ignores None values, as CLI defaults are None)."""
    return replace(options, **{k: v for k, v in changes.items() if v is not None})
