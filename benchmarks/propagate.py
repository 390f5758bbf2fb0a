"""Benchmark: student inference, our fast path vs a naive loop, on real paragraphs, in one process.

Baseline (what the issue calls naive): the same HF student in fp32, fixed batches of 32, padded to
max length 512, input order. Ours: `distill.inference.Scorer` with its defaults. Runs are interleaved
(ours, baseline, baseline, ours, ...) and the median is taken, because the 2 CPU cores are shared
with other jobs; CPU-seconds (process time) are reported too, as they are far less sensitive to that
sharing. Each option (bf16, int8, torch.compile, token budgets, no prefetch) is measured on a subset.
GPU figures are a model (FLOPs from the architecture at the measured length distribution), not a
measurement: there is no GPU here.

    python benchmarks/propagate.py [--n 300] [--rounds 2] [--option-n 128]
    python benchmarks/propagate.py --frontier-only --frontier default=DIR 2l128=DIR 2l128-int8=DIR ...

The frontier (issue 21) runs each given student on its default path over the validation articles of
the release split: paragraphs per CPU- and wall-second, agreement with the teacher and with the first
(default) student, FLOPs and GPU estimates, and `cost_ratio_at_equal_quality`: over the row
`<default>-autocast`, the default student on the path before bf16 runs cast the encoder's weights once
(autocast re-cast them on every batch), with `cost_ratio_over_cast_default_path` beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from distill.data import RELEASE_SPLIT  # noqa: E402  (the project's article split)
from distill.inference import (  # noqa: E402
    CALIBRATION_TEXTS,
    InferenceOptions,
    Scorer,
    labels_from_outputs,
    load_model,
    reference_predict_arrays,
    tokenize,
)
from distill.quick_student import build_quick_student  # noqa: E402

LABELS = REPO.parent / "shared" / "data" / "labels" / "teacher_labels_v2.parquet"
RESULT = REPO / "benchmarks" / "results" / "propagate.json"
PAPER = {"paragraphs": 133_000_000, "a100_hours": 80, "per_s_per_gpu": 133_000_000 / (80 * 3600)}
GPUS = {  # dense bf16 peak, assumed rental price (USD per GPU-hour, 2025 cloud on-demand ballpark)
    "A100": {"peak_tflops_bf16": 312, "peak_tflops_fp32": 19.5, "usd_per_hour": 2.0},
    "H100": {"peak_tflops_bf16": 989, "peak_tflops_fp32": 67, "usd_per_hour": 3.5},
}
# The paper's student (XLM-RoBERTa-base class, ~86M non-embedding params) at 512 tokens:
# 2 * 86e6 * 512 + 4 * 12 layers * 768 * 512^2 FLOPs, for its implied utilisation.
PAPER_GFLOPS_PER_PARAGRAPH = (2 * 86e6 * 512 + 4 * 12 * 768 * 512**2) / 1e9
UTILISATION = 0.35


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def labels(model, arrays) -> list[dict]:
    return labels_from_outputs(model.config, *arrays)


def agreement(a: list[dict], b: list[dict]) -> dict:
    pairs = list(zip(a, b, strict=True))
    return {
        "label_agreement": float(
            np.mean(
                [x["document_type"] == y["document_type"] and x["domain"] == y["domain"] for x, y in pairs]
            )
        ),
        "document_type_agreement": float(
            np.mean([x["document_type"] == y["document_type"] for x, y in pairs])
        ),
        "domain_agreement": float(np.mean([x["domain"] == y["domain"] for x, y in pairs])),
        "score_mad": float(np.mean([abs(x["educational_score"] - y["educational_score"]) for x, y in pairs])),
        "score_rounded_agreement": float(
            np.mean([round(x["educational_score"]) == round(y["educational_score"]) for x, y in pairs])
        ),
    }


def flops_per_paragraph(model, lengths: np.ndarray) -> dict:
    """Forward FLOPs from the architecture: 2 per encoder-layer weight per token, attention scores and
    values, and 2 per head weight once per paragraph (the heads read one pooled vector). Embedding
    tables, including the lexical branch's bag, are lookups and adds, not multiplications."""
    enc = model.encoder
    encoder_layers = sum(p.numel() for p in enc.encoder.parameters())
    lookups = sum(p.numel() for p in enc.embeddings.parameters())
    if getattr(enc, "pooler", None) is not None:  # built but unused: the student mean-pools
        lookups += sum(p.numel() for p in enc.pooler.parameters())
    if getattr(model, "bow", None) is not None:
        lookups += model.bow.weight.numel()
    heads = sum(p.numel() for p in model.parameters()) - encoder_layers - lookups
    cfg = enc.config
    n = lengths.astype(np.float64)
    per_token = 2.0 * encoder_layers
    attention = 4.0 * cfg.num_hidden_layers * cfg.hidden_size  # x n^2: QK^T and AV, 2 FLOPs per MAC
    per_para = per_token * n + attention * n * n + 2.0 * heads
    at_512 = per_token * 512 + attention * 512 * 512 + 2.0 * heads
    return {
        "params_total": int(sum(p.numel() for p in model.parameters())),
        "params_encoder_layers": int(encoder_layers),
        "params_heads": int(heads),
        "mean_tokens": float(n.mean()),
        "gflops_per_paragraph_mean": float(per_para.mean() / 1e9),
        "gflops_per_paragraph_padded_512": float(at_512 / 1e9),
    }


def gpu_estimate(flops: dict, tokenize_per_cpu_s: float) -> dict:
    """Paragraphs/s = peak x utilisation / FLOPs per paragraph; GPU-hours and cost for the paper's 133M."""
    per_para = flops["gflops_per_paragraph_mean"] * 1e9
    paper_util = (
        PAPER["per_s_per_gpu"] * PAPER_GFLOPS_PER_PARAGRAPH * 1e9 / (GPUS["A100"]["peak_tflops_bf16"] * 1e12)
    )
    out = {
        "note": "ESTIMATE from FLOPs, not measured (no GPU here): throughput = peak x utilisation / "
        "FLOPs per paragraph at the measured token-length distribution (length-sorted batches, no padding "
        "to 512). Prices are assumptions. 'bf16_at_paper_utilisation' uses the A100 utilisation the "
        "paper's own run implies; 'fp32_exact_no_tf32' is `--precision fp32` (PyTorch leaves TF32 off).",
        "utilisation": UTILISATION,
        "paper": {k: round(v, 1) for k, v in PAPER.items()},
        "paper_implied_a100_utilisation": round(paper_util, 3),
    }
    for name, gpu in GPUS.items():
        rows = {}
        for label, peak, util in (
            ("bf16", gpu["peak_tflops_bf16"], UTILISATION),
            ("bf16_at_paper_utilisation", gpu["peak_tflops_bf16"], paper_util),
            ("fp32_exact_no_tf32", gpu["peak_tflops_fp32"], UTILISATION),
        ):
            per_s = peak * 1e12 * util / per_para
            hours = PAPER["paragraphs"] / per_s / 3600
            rows[label] = {
                "paragraphs_per_s": round(per_s),
                "x_paper_per_gpu": round(per_s / PAPER["per_s_per_gpu"], 1),
                "gpu_hours_133M": round(hours, 2),
                "usd_133M": round(hours * gpu["usd_per_hour"], 2),
                "cpu_cores_to_feed_tokenizer": round(per_s / tokenize_per_cpu_s, 1),
            }
        out[name] = {**gpu, **rows}
    return out


def write(result: dict, path: str, model, lengths: np.ndarray, tokenize_per_cpu_s: float) -> None:
    """Write what is measured so far (the run is long on shared cores; partial results survive)."""
    flops = flops_per_paragraph(model, np.minimum(lengths, 512))
    result["flops"] = flops
    result["gpu_estimate"] = gpu_estimate(flops, tokenize_per_cpu_s)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=2) + "\n")


# ------------------------------------------------------------------------------------------ frontier
# Cost at equal quality (issue 21): variants of the default student against its default path.
EQUAL_QUALITY = 0.01  # a variant is "equal" when within this of the default on type F1, domain F1 and r
QUALITY_KEYS = ("document_type_f1", "domain_f1", "educational_score_pearson")


def quality(raw: tuple[np.ndarray, ...], part, config) -> dict:
    from distill.evaluate import evaluate_outputs
    from distill.metrics import headline

    keys = ("document_type_logits", "domain_logits", "educational_score")
    return {
        k: round(v, 4)
        for k, v in headline(evaluate_outputs(dict(zip(keys, raw, strict=True)), part, config)).items()
    }


def agreement_with(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> dict:
    """How closely one model's outputs follow another's: equal labels per head, score r and MAD."""
    return {
        "document_type": round(float(np.mean(a[0].argmax(1) == b[0].argmax(1))), 4),
        "domain": round(float(np.mean(a[1].argmax(1) == b[1].argmax(1))), 4),
        "score_pearson": round(float(np.corrcoef(a[2], b[2])[0, 1]), 4),
        "score_mad": round(float(np.mean(np.abs(a[2] - b[2]))), 4),
    }


def cost_ratio_at_equal_quality(rows: dict[str, dict], default: str, reference: str | None = None) -> dict:
    """Best paragraphs-per-CPU-second ratio over `reference` (default: `default`) among models within
    EQUAL_QUALITY of `default` on every headline metric."""
    reference = reference or default
    ref = rows[default]["quality"]
    equal = {
        name: row
        for name, row in rows.items()
        if all(row["quality"][k] >= ref[k] - EQUAL_QUALITY for k in QUALITY_KEYS)
    }
    best = max(equal, key=lambda n: equal[n]["per_cpu_s"])
    return {
        "ratio": round(equal[best]["per_cpu_s"] / rows[reference]["per_cpu_s"], 2),
        "variant": best,
        "over": reference,
        "equal_quality": f"within {EQUAL_QUALITY} of {default!r} on {', '.join(QUALITY_KEYS)}",
        "candidates": sorted(equal),
    }


def frontier(models: dict[str, str], labels: str, rounds: int, tokenize_per_cpu_s: float | None) -> dict:
    """Each model on its default path (`load_scorer`), on the validation articles of the release split:
    paragraphs per CPU-second and per wall-second (interleaved rounds, median), agreement with the
    teacher, agreement with the first model (the default), FLOPs and the GPU estimate they imply."""
    from distill.data import load_labels, split_by_article
    from distill.inference import load_scorer, tokenize
    from distill.int8 import is_int8

    data = load_labels([labels], input_format="title_text")
    _, valid_idx, _ = split_by_article(data.articles, **RELEASE_SPLIT)
    part = data.subset(valid_idx)
    default = next(iter(models))
    scorers = {name: load_scorer(path) for name, path in models.items()}
    # The default model on the path before bf16 weights were cast once (autocast re-cast them per batch):
    # the "current default path" the cost ratio is measured against.
    before = f"{default}-autocast"
    models = {**models, before: models[default]}
    first = scorers[default]  # the same loaded model (the cast path works on a copy of it)
    scorers[before] = Scorer(first.model, first.tokenizer, InferenceOptions(cast_weights=False), first.name)
    for name, scorer in scorers.items():
        if scorer.inputs([{"text": "x", "section_title": "t", "path": "p[0]"}])[0] != "t | x":
            raise SystemExit(f"{name} does not read `section title | text`: the frontier compares those")
        scorer.score(part.texts[:CALIBRATION_TEXTS])  # warm-up; `auto` calibrates as a real run's first chunk
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in scorers}
    outputs = {}
    for r in range(rounds):
        for name in list(scorers)[:: 1 if r % 2 == 0 else -1]:
            wall, cpu, outputs[name] = timed(lambda s=scorers[name]: s.predict_arrays(part.texts))
            runs[name].append((wall, cpu))
            print(f"frontier round {r} {name}: {len(part) / cpu:.1f} para/cpu-s", flush=True)
    rows = {}
    for name, scorer in scorers.items():
        wall = statistics.median(w for w, _ in runs[name])
        cpu = statistics.median(c for _, c in runs[name])
        lengths = np.array([len(x) for x in tokenize(scorer.tokenizer, part.texts, scorer.max_seq_length)])
        int8 = is_int8(scorer.model)
        flops = flops_per_paragraph(load_model(models[name])[0] if int8 else scorer.model, lengths)
        rows[name] = {
            "model": models[name],
            "layers": int(scorer.config.encoder["num_hidden_layers"]),
            "max_seq_length": scorer.max_seq_length,
            "int8_encoder": int8,
            "precision": scorer.describe()["precision_used"],
            "per_cpu_s": round(len(part) / cpu, 2),
            "per_s": round(len(part) / wall, 2),
            "quality": quality(outputs[name], part, scorer.config),
            "agreement_with_default": agreement_with(outputs[name], outputs[default]),
            "gflops_per_paragraph": round(flops["gflops_per_paragraph_mean"], 3),
        }
        if tokenize_per_cpu_s:
            a100 = gpu_estimate(flops, tokenize_per_cpu_s)["A100"]["bf16"]
            rows[name]["a100_bf16_paragraphs_per_s_estimate"] = a100["paragraphs_per_s"]
        rows[name]["cpu_cost_vs_default"] = round(rows[default]["per_cpu_s"] / rows[name]["per_cpu_s"], 3)
    return {
        "part": f"validation articles of the release split {RELEASE_SPLIT}",
        "paragraphs": len(part),
        "articles": len(set(part.articles)),
        "rounds": rounds,
        "default": default,
        "rows": rows,
        "cost_ratio_at_equal_quality": cost_ratio_at_equal_quality(rows, default, before),
        "cost_ratio_over_cast_default_path": cost_ratio_at_equal_quality(rows, default),
    }


def add_frontier(result: dict, args) -> None:
    """Measure the frontier of `--frontier NAME=DIR ...` into `result`, and plot it beside the JSON."""
    from cpu import cpu_info

    models = dict(item.split("=", 1) for item in args.frontier)
    rate = (result.get("tokens") or {}).get("tokenize_per_cpu_s")
    if "frontier" in result:  # kept: an earlier run may hold other variants or another CPU
        result.setdefault("earlier_frontiers", []).insert(0, result.pop("frontier"))
    result["frontier"] = {"cpu": cpu_info(), **frontier(models, args.labels, args.frontier_rounds, rate)}
    result["cost_ratio_at_equal_quality"] = result["frontier"]["cost_ratio_at_equal_quality"]["ratio"]
    plot_frontier(result["frontier"], Path(args.output).with_name("frontier.png"))
    print(json.dumps(result["frontier"]["cost_ratio_at_equal_quality"]), flush=True)


def plot_frontier(front: dict, path: Path) -> None:
    """Agreement with the teacher against paragraphs per CPU-second, one panel per headline metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = front["rows"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharex=True)
    for ax, key in zip(axes, QUALITY_KEYS, strict=True):
        ref = rows[front["default"]]["quality"][key]
        ax.axhspan(ref - EQUAL_QUALITY, ref + EQUAL_QUALITY, color="0.9", label=f"default +-{EQUAL_QUALITY}")
        by_speed = sorted(rows, key=lambda n: rows[n]["per_cpu_s"])
        for name, row in rows.items():
            i = by_speed.index(name)
            ax.scatter(row["per_cpu_s"], row["quality"][key], marker="s" if row["int8_encoder"] else "o")
            ax.annotate(
                name,
                (row["per_cpu_s"], row["quality"][key]),
                fontsize=7,
                xytext=(3, 3 if i % 2 == 0 else -9),  # alternate in speed order: close rows stay legible
                textcoords="offset points",
            )
        ax.set_title(key)
        ax.set_xlabel("paragraphs per CPU-second")
    axes[0].set_ylabel("agreement with the teacher (validation articles)")
    axes[0].legend(fontsize=7)
    from cpu import FLAGS

    cpu = front["cpu"]
    absent = [f for f in FLAGS if f not in cpu["flags"] and f != "bf16"]  # `bf16` is the ARM flag
    measured_on = (
        f"measured on {cpu['model']} ({cpu['cpu_count']} cores): "
        f"{cpu['summary']}{', no AMX' if 'amx_bf16' not in cpu['flags'] else ', AMX'}\n"
        f"lscpu flags present: {' '.join(cpu['flags']) or 'none of the AVX2/AVX-512/AMX set'}; "
        f"absent: {' '.join(absent) or 'none'}"
    )
    fig.suptitle(f"Scoring cost vs agreement, {measured_on}", fontsize=10)
    fig.tight_layout()
    # the CPU also in the PNG's text chunks, for whoever reads the file rather than looks at it
    fig.savefig(path, dpi=90, metadata={"Title": "Scoring cost vs agreement", "Description": measured_on})
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--labels", default=str(LABELS))
    parser.add_argument("--n", type=int, default=300, help="paragraphs timed for ours vs baseline")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--option-n", type=int, default=128, help="paragraphs per option measured")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--output", default=str(RESULT))
    parser.add_argument(
        "--frontier",
        nargs="+",
        metavar="NAME=MODEL_DIR",
        help="cost at equal quality: the default student first, then its variants (`biomed-enrich shrink`)",
    )
    parser.add_argument("--frontier-rounds", type=int, default=3)
    parser.add_argument(
        "--frontier-only", action="store_true", help="measure the frontier only; other results are kept"
    )
    args = parser.parse_args(argv)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)  # before minutes of measuring, not after
    torch.manual_seed(0)
    if args.frontier_only:
        if not args.frontier:
            parser.error("--frontier-only needs --frontier")
        result = json.loads(Path(args.output).read_text()) if Path(args.output).exists() else {}
        add_frontier(result, args)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
        return result

    table = pq.read_table(args.labels, columns=["id", "text"])
    rng = np.random.default_rng(0)
    # Heads are fitted on the first 256 rows; time on others, a seeded random sample.
    pick = sorted(rng.choice(np.arange(256, table.num_rows), size=args.n, replace=False).tolist())
    texts = [table["text"][i].as_py() for i in pick]
    tmp = Path(tempfile.mkdtemp(prefix="bench-propagate-"))
    model_dir = build_quick_student(args.labels, tmp / "student")
    model, tokenizer = load_model(model_dir)

    all_texts = table["text"].to_pylist()
    tok_wall, tok_cpu, ids = timed(lambda: tokenize(tokenizer, all_texts, 512))
    lengths = np.array([len(x) for x in ids])
    token_stats = {
        "paragraphs": len(lengths),
        "mean": float(lengths.mean()),
        "p50": float(np.percentile(lengths, 50)),
        "p90": float(np.percentile(lengths, 90)),
        "truncated_share": float((lengths >= 512).mean()),
        "tokenize_per_cpu_s": round(len(all_texts) / tok_cpu, 1),
    }
    sample_tokens = int(sum(len(x) for x in tokenize(tokenizer, texts, 512)))
    print(f"tokens: {token_stats}", flush=True)

    scorer = Scorer(model, tokenizer, InferenceOptions())
    scorer.score(texts[:16])  # warm-up (thread pools, allocator)
    reference_predict_arrays(model, tokenizer, texts[:8], batch_size=8)
    runs: dict[str, list[tuple[float, float]]] = {"ours": [], "baseline": []}
    ours_out = base_arrays = None
    for r in range(args.rounds):
        order = ["ours", "baseline"] if r % 2 == 0 else ["baseline", "ours"]
        for name in order:
            if name == "ours":
                wall, cpu, ours_out = timed(lambda: scorer.score(texts))
            else:
                wall, cpu, base_arrays = timed(lambda: reference_predict_arrays(model, tokenizer, texts))
            runs[name].append((wall, cpu))
            print(
                f"round {r} {name}: {len(texts) / wall:.2f} para/s wall, {len(texts) / cpu:.2f} para/cpu-s",
                flush=True,
            )
    base_out = labels(model, base_arrays)
    n = len(texts)
    ours_wall = statistics.median(w for w, _ in runs["ours"])
    base_wall = statistics.median(w for w, _ in runs["baseline"])
    ours_cpu = statistics.median(c for _, c in runs["ours"])
    base_cpu = statistics.median(c for _, c in runs["baseline"])
    result = {
        "machine": f"{torch.get_num_threads()} torch threads, {torch.backends.cpu.get_cpu_capability()}, "
        "2 cores shared with other jobs",
        "paragraphs": n,
        "rounds": args.rounds,
        "ours_per_s": round(n / ours_wall, 2),
        "baseline_per_s": round(n / base_wall, 2),
        "ratio": round(base_wall / ours_wall, 2),
        "ours_tokens_per_s": round(sample_tokens / ours_wall, 1),
        "baseline_tokens_per_s": round(sample_tokens / base_wall, 1),
        "ours_per_cpu_s": round(n / ours_cpu, 2),
        "baseline_per_cpu_s": round(n / base_cpu, 2),
        "ratio_cpu_time": round(base_cpu / ours_cpu, 2),
        "runs_wall_cpu_s": {k: [[round(w, 2), round(c, 2)] for w, c in v] for k, v in runs.items()},
        **agreement(ours_out, base_out),
        "ours_options": scorer.describe(),
        "padding_efficiency_ours": round(scorer.stats["tokens"] / max(1, scorer.stats["padded_tokens"]), 3),
        "tokens": token_stats,
    }
    print(
        json.dumps({k: result[k] for k in ("ours_per_s", "baseline_per_s", "ratio", "ratio_cpu_time")}),
        flush=True,
    )
    save = lambda: write(result, args.output, model, lengths, token_stats["tokenize_per_cpu_s"])  # noqa: E731
    save()

    # Each option alone, on a subset, against the default on the same subset and the fp32 reference.
    subset = texts[: args.option_n]
    ref_subset = base_out[: args.option_n]
    variants = {
        "default": InferenceOptions(),
        "batch_tokens_2048": InferenceOptions(batch_tokens=2048),
        "batch_tokens_16384": InferenceOptions(batch_tokens=16384),
        "batch_tokens_65536": InferenceOptions(batch_tokens=65536),
        "no_prefetch": InferenceOptions(prefetch=0, chunk_size=10**9),
        "bf16": InferenceOptions(precision="bf16"),
        "int8": InferenceOptions(quantize=True),
    }
    options: dict[str, dict] = {}
    result["options"] = options
    result["options_paragraphs"] = len(subset)

    def measure(name: str, opts: InferenceOptions) -> None:
        try:
            s = Scorer(model, tokenizer, opts)
            warm_wall, _, _ = timed(lambda s=s: s.score(subset[:32]))  # compile happens here for `compile`
            wall, cpu, out = timed(lambda s=s: s.score(subset))
        except Exception as exc:  # an option that cannot run here is reported, not fatal
            options[name] = {"error": repr(exc)[:300]}
            print(f"option {name} failed: {exc!r}", flush=True)
            return
        options[name] = {
            "per_s": round(len(subset) / wall, 2),
            "per_cpu_s": round(len(subset) / cpu, 2),
            "warmup_s": round(warm_wall, 1),
            **agreement(out, ref_subset),
        }
        if "default" in options and name != "default":
            options[name]["speedup_vs_default_cpu_time"] = round(
                options[name]["per_cpu_s"] / options["default"]["per_cpu_s"], 2
            )
        print(f"option {name}: {options[name]}", flush=True)
        save()

    for name, opts in variants.items():
        measure(name, opts)

    if not args.skip_pipeline:
        import pyarrow as pa

        from pipelines.propagate import run_propagate

        inp = tmp / "in"
        inp.mkdir()
        pq.write_table(
            pa.table({"id": [table["id"][i].as_py() for i in pick], "text": texts}), inp / "p.parquet"
        )
        wall, cpu, stats = timed(
            lambda: run_propagate([str(inp)], str(model_dir), str(tmp / "out"), progress=False)
        )
        result["beam_directrunner"] = {
            "paragraphs": stats["read"],
            "written": stats["written"],
            "per_s": round(stats["read"] / wall, 2),
            "per_cpu_s": round(stats["read"] / cpu, 2),
            "note": "end to end incl. pipeline start-up, Parquet read/write and model load",
        }
        print(f"beam: {result['beam_directrunner']}", flush=True)
        save()

    if args.frontier:
        add_frontier(result, args)
        save()
    if not args.skip_compile:  # last: inductor compilation is long on a shared CPU
        measure("compile", InferenceOptions(compile=True))
    print(json.dumps({k: result[k] for k in ("ours_per_s", "baseline_per_s", "ratio", "label_agreement")}))
    print(json.dumps(result["gpu_estimate"], indent=1))
    return result


if __name__ == "__main__":
    main()
