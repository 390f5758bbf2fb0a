"""`<root>/report.html`: one self-contained page on what a run produced (plots embedded as base64 PNG).

Reads only the run's outputs (stage directories, `*_stats.json`, manifests, `_run.json`, the
model's `agreement.json`, an annotation loop's `loop_stats.json`), so it can be regenerated at any
time and works on partial runs: a missing part shows as "not available" instead of failing the page.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import time
from collections import Counter
from pathlib import Path

from pipelines.app.report_updates import models_section
from pipelines.app.run_layout import STAGE_DIRS
from pipelines.core.schemas import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS, EDUCATIONAL_SCORES
from pipelines.core.uris import as_path

# The paper's published distribution (% of paragraphs at scores 1..5 by predicted label), from
# shared/reference/biomed-enriched-paper.md section 1 "Educational-score distribution" [TH-PLOT].
PAPER_SCORE_TABLE: dict[str, tuple[float, ...]] = {
    "Study": (0.7, 7.9, 10.0, 78.7, 2.6),
    "Review": (0.3, 1.6, 5.0, 86.9, 6.1),
    "Clinical case": (4.0, 14.4, 24.6, 57.0, 0.0),
    "Other": (43.4, 30.9, 14.6, 11.1, 0.0),
    "biomedical": (1.8, 9.4, 10.9, 75.3, 2.6),
    "clinical": (6.0, 23.4, 26.6, 44.0, 0.0),
    "other": (60.1, 29.4, 8.3, 2.1, 0.0),
}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#17324d;color:#fff;padding:18px 32px}header h1{margin:0;font-size:24px}
header p{margin:4px 0 0;opacity:.85}main{padding:8px 32px 40px;max-width:1200px}
section{background:#fff;border-radius:8px;padding:14px 22px;margin:16px 0;
box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{font-size:19px;margin:4px 0 10px;color:#17324d}table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border:1px solid #d8dde5;padding:4px 8px;text-align:right}th{background:#eef2f7}
td:first-child,th:first-child{text-align:left}.row{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}
img{max-width:100%}.na{color:#8a94a6;font-style:italic}.ok{color:#1a7f37}.bad{color:#b42318}
details pre{font-size:11px;max-height:300px;overflow:auto;background:#f3f4f6;padding:8px}
"""


# ---------------------------------------------------------------- pure helpers


def score_bin(score: float) -> int:
    """Regression output -> 1..5 bin, rounding half up (how the paper's table bins it)."""
    return int(min(5, max(1, math.floor(float(score) + 0.5))))


def score_distribution(rows: list[dict], column: str) -> dict[str, list[float]]:
    """% of paragraphs at each score bin, per value of `column` (e.g. document_type)."""
    counts: dict[str, Counter] = {}
    for r in rows:
        counts.setdefault(r[column], Counter())[score_bin(r["educational_score"])] += 1
    return {
        label: [100.0 * c[s] / max(1, sum(c.values())) for s in EDUCATIONAL_SCORES]
        for label, c in counts.items()
    }


def label_shares(values: list[str], order: tuple[str, ...]) -> list[float]:
    c = Counter(values)
    return [100.0 * c[label] / max(1, len(values)) for label in order]


def flatten(obj: object, prefix: str = "") -> dict[str, object]:
    """Nested dict -> {"a.b.c": scalar} (lists of scalars kept), for generic stats tables."""
    out: dict[str, object] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        out[prefix.rstrip(".")] = obj
    return out


def fmt(value: object) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return html.escape(str(value))
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return html.escape(str(value))


def table(headers: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def png(fig) -> str:
    """A matplotlib figure as an inline <img> (base64 PNG), closing the figure."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


# ---------------------------------------------------------------- reading a run


def _read_rows(path: Path, columns: list[str]) -> list[dict] | None:
    from pipelines.core.io import parquet_files, read_table

    try:
        files = parquet_files([str(path)])
    except FileNotFoundError:
        return None
    table_ = read_table(files)
    return table_.select([c for c in columns if c in table_.column_names]).to_pylist()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _stats_files(root: Path) -> dict[str, dict]:
    found = {}
    for path in sorted([*root.glob("*_stats.json"), *root.glob("*/*_stats.json")]):
        data = _read_json(path)
        if isinstance(data, dict):
            found[path.name.removesuffix("_stats.json")] = data
    return found


# ---------------------------------------------------------------- sections


def _na(what: str) -> str:
    return f'<p class="na">{html.escape(what)} not available in this run.</p>'


def _stage_row(root: Path, stage: str, sub: str, state: dict, st: dict) -> list:
    """One row of the stages table: status, wall s, read, written, dead letters, rows/s, cost, GPU h."""
    from pipelines.core.manifest import read_manifest

    manifest = read_manifest(str(root / sub)) or {}
    seconds = state.get("seconds") or st.get("wall_seconds") or st.get("seconds")
    out_rows = sum((manifest.get("rows") or {}).values()) or None
    if stage == "ingest":
        in_rows = _first_number(st, ("articles_read", "read"))
    elif stage == "train":
        sizes = (_read_json(root / sub / "agreement.json") or {}).get("sizes") or {}
        in_rows = sum(sizes.get(k, 0) for k in ("train", "validation", "test")) or None
        out_rows = None  # a model, not rows
    else:
        in_rows = _first_number(st, ("paragraphs_read", "read", "rows_read", "inputs_read"))
    dead = _first_number(st, ("dead_lettered", "articles_dead_lettered", "dead_letters"))
    cost = _first_number(st, ("cost_usd", "estimated_cost_usd", "cost"))
    gpu = _first_number(st, ("estimated_gpu_hours", "gpu_hours_estimate", "gpu_hours"))
    throughput = (out_rows or in_rows) / seconds if seconds and (out_rows or in_rows) else None
    status = state.get("status", "done" if manifest else "not run")
    return [stage, status, seconds, in_rows, out_rows, dead, throughput, cost, gpu]


def _time_chart(rows: list[list]) -> str:
    """Bars of wall seconds per stage ('' when no stage was timed)."""
    timed = [(r[0], r[2]) for r in rows if isinstance(r[2], (int, float))]
    if not timed:
        return ""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    ax.barh([t[0] for t in timed][::-1], [t[1] for t in timed][::-1], color="#3b6ea5")
    ax.set_xlabel("wall seconds (this run)")
    ax.set_title("Time per stage")
    return png(fig)


def _unfinished_banner(run_state: dict) -> str:
    unfinished = [
        f"{name} {state.get('status')}" + (f": {state.get('error')}" if state.get("error") else "")
        for name, state in run_state.items()
        if state.get("status") in ("failed", "interrupted", "running")
    ]
    if not unfinished:
        return ""
    return (
        f'<p class="bad"><b>This run did not finish</b> ({html.escape("; ".join(unfinished))}): '
        "the sections below show only what the finished stages left.</p>"
    )


def _stages_section(root: Path, stats: dict[str, dict]) -> str:
    run_state = (_read_json(root / "_run.json") or {}).get("stages", {})
    rows = []
    for stage, sub in [*STAGE_DIRS.items(), ("report", None)]:
        state = run_state.get(stage, {})
        if sub is None:  # the report itself: only its status and time in this run
            status = "this page" if state.get("status") in (None, "running", "done") else state["status"]
            rows.append([stage, status, state.get("seconds"), *[None] * 6])
        else:
            rows.append(_stage_row(root, stage, sub, state, stats.get(stage, {})))
    headers = [
        "stage",
        "status",
        "wall s",
        "read",
        "written",
        "dead letters",
        "rows/s",
        "cost USD",
        "GPU h (est.)",
    ]
    chart = _time_chart(rows)
    return (
        "<section><h2>Stages: throughput and cost</h2>" + _unfinished_banner(run_state) + ""
        "<p>Wall time from this run's log (skipped stages keep the time of the run that built them). "
        "Read: articles for ingest, labelled paragraphs for train, paragraphs otherwise. Written: rows of "
        "the stage's datasets from its manifest (documents for subsets); rows/s: written (read for train) "
        "per second. Cost: the annotate ledger.</p>"
        f'<div class="row"><div>{table(headers, rows)}</div><div>{chart}</div></div></section>'
    )


def _first_number(stats: dict, keys: tuple[str, ...]) -> float | None:
    flat = flatten(stats)
    for key in keys:
        for k, v in flat.items():
            if k.split(".")[-1] == key and isinstance(v, (int, float)) and not isinstance(v, bool):
                return v
    return None


def _labels_section(labels: list[dict] | None, scored: list[dict] | None) -> str:
    if not labels and not scored:
        return (
            "<section><h2>Label distributions</h2>"
            + _na("Teacher labels and scored paragraphs")
            + "</section>"
        )
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for ax, (column, order) in zip(
        axes[:2], (("document_type", DOCUMENT_TYPE_LABELS), ("domain", DOMAIN_LABELS)), strict=True
    ):
        x = np.arange(len(order))
        for offset, (name, rows, color) in zip(
            (-0.2, 0.2), (("teacher", labels, "#e08a2c"), ("student", scored, "#3b6ea5")), strict=True
        ):
            if rows:
                ax.bar(
                    x + offset, label_shares([r[column] for r in rows], order), 0.4, label=name, color=color
                )
        ax.set_xticks(x, order, fontsize=8)
        ax.set_ylabel("% of paragraphs")
        ax.set_title(column)
        ax.legend(fontsize=8)
    ax = axes[2]
    for name, rows, color in (("teacher", labels, "#e08a2c"), ("student", scored, "#3b6ea5")):
        if rows:
            shares = [
                100.0 * sum(1 for r in rows if score_bin(r["educational_score"]) == s) / len(rows)
                for s in EDUCATIONAL_SCORES
            ]
            offset = -0.2 if name == "teacher" else 0.2
            ax.bar(np.array(EDUCATIONAL_SCORES) + offset, shares, 0.4, label=name, color=color)
    ax.set_title("educational score (binned)")
    ax.set_xlabel("score")
    ax.legend(fontsize=8)
    fig.tight_layout()
    counts = [
        ["teacher labels (sample)", len(labels or [])],
        ["student-scored paragraphs", len(scored or [])],
    ]
    return (
        "<section><h2>Label distributions</h2>"
        "<p>Teacher = the annotated sample; student = every paragraph scored by the distilled model.</p>"
        f"{png(fig)}{table(['dataset', 'paragraphs'], counts)}</section>"
    )


def _scores_section(scored: list[dict] | None) -> str:
    title = "<section><h2>Educational score by document type and domain, next to the paper</h2>"
    if not scored:
        return title + _na("Scored paragraphs") + "</section>"
    import matplotlib.pyplot as plt

    ours = {**score_distribution(scored, "document_type"), **score_distribution(scored, "domain")}
    labels = [*DOCUMENT_TYPE_LABELS, *DOMAIN_LABELS]
    fig, axes = plt.subplots(2, 4, figsize=(13, 5.4), sharey=True)
    for ax, label in zip(axes.flat, labels, strict=False):
        paper = PAPER_SCORE_TABLE[label]
        ax.bar(
            [s - 0.2 for s in EDUCATIONAL_SCORES],
            ours.get(label, [0] * 5),
            0.4,
            label="ours",
            color="#3b6ea5",
        )
        ax.bar([s + 0.2 for s in EDUCATIONAL_SCORES], paper, 0.4, label="paper", color="#b9c3cf")
        n = sum(1 for r in scored if label in (r["document_type"], r["domain"]))
        kind = "type" if label in DOCUMENT_TYPE_LABELS else "domain"
        ax.set_title(f"{label} ({kind}, n={n})", fontsize=9)
        ax.set_xticks(EDUCATIONAL_SCORES)
    axes.flat[0].legend(fontsize=8)
    axes.flat[-1].axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("% of paragraphs")
    fig.tight_layout()
    rows = []
    for label in labels:
        kind = "type" if label in DOCUMENT_TYPE_LABELS else "domain"
        o = ours.get(label)
        rows.append(
            [
                f"{label} ({kind})",
                *(f"{v:.1f}" if o else "-" for v in (o or [0] * 5)),
                *(f"{v:.1f}" for v in PAPER_SCORE_TABLE[label]),
            ]
        )
    headers = [
        "label",
        *(f"ours {s}" for s in EDUCATIONAL_SCORES),
        *(f"paper {s}" for s in EDUCATIONAL_SCORES),
    ]
    return (
        title
        + "<p>% of paragraphs at each rounded score. Paper figures: Biomed-Enriched (arXiv 2506.20331), "
        "133.6M paragraphs; ours: this run's student on its own corpus (small runs are noisy). The bundled "
        "teacher labels are stricter than the paper's teacher (about 64% of paragraphs score 3 or more, "
        "against about 80%), so a shift toward lower scores is expected with the replay teacher.</p>"
        f"{png(fig)}{table(headers, rows)}</section>"
    )


def headline_agreement(agreement: dict) -> list[list[object]]:
    """[metric, student, paper] rows from agreement.json's `headline` and `paper` blocks."""
    paper = flatten(agreement.get("paper") or {})
    rows = []
    for key, value in (agreement.get("headline") or {}).items():
        head, _, metric = key.rpartition("_")
        ref = paper.get(f"{head}.{metric}", paper.get(f"{head}.{metric.replace('f1', 'macro_f1')}"))
        rows.append([key, value, ref])
    return rows


def text_color(value: float, vmax: float) -> str:
    """Cell text colour on the Blues colormap: white on the darker half, near-black on the lighter."""
    return "white" if vmax and value > vmax / 2 else "#1d2330"


def lower_is_better(metric: str) -> bool:
    """Error metrics (MAE, calibration error) read the other way from F1, kappa and Pearson r."""
    return any(k in metric for k in ("mae", "ece", "error", "loss"))


def _confusion_plot(agreement: dict):
    import matplotlib.pyplot as plt

    blocks = [
        (name, agreement[name]["confusion_matrix"])
        for name in ("document_type", "domain")
        if isinstance(agreement.get(name), dict) and "confusion_matrix" in agreement[name]
    ]
    if not blocks:
        return ""
    fig, axes = plt.subplots(1, len(blocks), figsize=(5.4 * len(blocks), 4.6), squeeze=False)
    for ax, (name, cm) in zip(axes[0], blocks, strict=True):
        matrix, labels = cm["matrix"], cm["labels"]
        vmax = max((v for row in matrix for v in row), default=0)
        ax.imshow(matrix, cmap="Blues", vmin=0)
        for i, row in enumerate(matrix):
            for j, v in enumerate(row):
                ax.text(j, i, str(v), ha="center", va="center", fontsize=12, color=text_color(v, vmax))
        ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=10, ha="right")
        ax.set_yticks(range(len(labels)), labels, fontsize=10)
        ax.set_xlabel("student", fontsize=10)
        ax.set_ylabel("teacher", fontsize=10)
        ax.set_title(f"{name} (held out)", fontsize=11)
    fig.tight_layout()
    return png(fig)


def _agreement_section(root: Path) -> str:
    title = "<section><h2>Student vs teacher agreement</h2>"
    agreement = _read_json(root / STAGE_DIRS["train"] / "agreement.json")
    if not agreement:
        return title + _na("model/agreement.json") + "</section>"
    rows = headline_agreement(agreement)
    chart = ""
    if rows:
        import matplotlib.pyplot as plt
        import numpy as np

        groups = [
            ("higher is better", [r for r in rows if not lower_is_better(r[0])]),
            ("lower is better", [r for r in rows if lower_is_better(r[0])]),
        ]
        groups = [(kind, part) for kind, part in groups if part]
        fig, axes = plt.subplots(
            len(groups),
            1,
            figsize=(6.4, 0.5 * len(rows) + 1.6 * len(groups)),
            squeeze=False,
            gridspec_kw={"height_ratios": [len(part) for _, part in groups]},
        )
        for ax, (kind, part) in zip(axes[:, 0], groups, strict=True):
            y = np.arange(len(part))
            ax.barh(y - 0.2, [r[1] or 0 for r in part], 0.4, label="this student", color="#3b6ea5")
            ax.barh(y + 0.2, [r[2] or 0 for r in part], 0.4, label="paper's student", color="#b9c3cf")
            ax.set_yticks(y, [r[0] for r in part], fontsize=9)
            ax.invert_yaxis()
            ax.set_title(f"held-out agreement ({kind})", fontsize=10, pad=22 if ax is axes[0, 0] else 6)
        axes[0, 0].legend(fontsize=9, loc="lower left", bbox_to_anchor=(0.0, 1.12), ncol=2, frameon=False)
        fig.tight_layout()
        chart = png(fig)
    sizes = agreement.get("sizes") or {}
    held = sizes.get("held_out")
    note = (
        f"Measured on {held} held-out teacher-labelled paragraphs from articles the student never saw"
        f" ({agreement.get('mode', 'training')} mode). Small held-out sets make these numbers noisy."
        if held
        else "From the trained model's agreement.json."
    )
    flat = {
        k: v
        for k, v in flatten(agreement).items()
        if isinstance(v, (int, float, str)) and not isinstance(v, bool)
    }
    details = table(
        ["metric", "value"], [[k, v] for k, v in flat.items() if not isinstance(v, str) or len(v) < 80]
    )
    return (
        title
        + f"<p>{html.escape(note)}</p>"
        + f'<div class="row"><div>{table(["metric", "student", "paper"], rows)}</div><div>{chart}</div></div>'
        + _confusion_plot(agreement)
        + f"<details><summary>all of agreement.json</summary>{details}</details></section>"
    )


LOOP_METRICS = ("document_type_f1", "domain_f1", "educational_score_pearson")


def _loop_section(root: Path) -> str:
    """The annotation loop's curve (`<root>/loop_stats.json`, written by `biomed-enrich loop`): held-out
    agreement after each round against the teacher labels spent so far. Empty when there is no loop."""
    stats = _read_json(root / "loop_stats.json")
    if not isinstance(stats, dict):
        return ""
    title = "<section><h2>Agreement vs teacher labels spent</h2>"
    points = [p for p in stats.get("curve") or [] if isinstance(p, dict) and "labels" in p]
    tracked = [p for p in points if isinstance(p.get("agreement"), (int, float))]
    config = stats.get("config") or {}
    note = (
        f"Annotation loop ({html.escape(str(stats.get('strategy', config.get('strategy', '?'))))} "
        f"strategy, budget {fmt(config.get('budget'))}, stopped: "
        f"{html.escape(str(stats.get('stop_reason')))})."
    )
    if not tracked:
        return (
            title
            + f"<p>{note}</p>"
            + _na("Held-out agreement (the loop ran without --eval-labels)")
            + table(["round", "labels spent"], [[p.get("round"), p["labels"]] for p in points])
            + "</section>"
        )
    note += (
        " Agreement is the in-loop student's (heads on frozen embeddings) on held-out teacher labels after"
        " each round: the mean of document_type macro-F1, domain macro-F1 and educational-score Pearson r,"
        f" on {fmt(stats.get('held_out_paragraphs'))} held-out paragraphs."
    )
    import matplotlib.pyplot as plt

    metrics = [m for m in LOOP_METRICS if any(m in p for p in tracked)]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    labels_spent = [p["labels"] for p in tracked]
    ax.plot(labels_spent, [p["agreement"] for p in tracked], "o-", lw=2.2, color="#17324d", label="agreement")
    for metric, color in zip(metrics, ("#3b6ea5", "#e08a2c", "#1a7f37"), strict=False):
        pts = [(p["labels"], p[metric]) for p in tracked if metric in p]
        ax.plot(*zip(*pts, strict=True), ".--", lw=1, color=color, label=metric)
    ax.set_xlabel("teacher labels spent")
    ax.set_ylabel("held-out agreement")
    ax.set_title("Agreement vs teacher labels spent", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    rows = [[p.get("round"), p["labels"], p.get("agreement"), *(p.get(m) for m in metrics)] for p in points]
    return (
        title
        + f"<p>{note}</p>"
        + f'<div class="row"><div>{table(["round", "labels spent", "agreement", *metrics], rows)}</div>'
        + f"<div>{png(fig)}</div></div></section>"
    )


def _size_key(entry: dict) -> tuple:
    groups = entry.get("groups") or {}
    counts = ("articles", "documents", "paragraphs", "tokens", "unique_tokens")
    return (*(entry.get(k) for k in counts), sorted((g, v.get("documents")) for g, v in groups.items()))


def identical_subsets(root: Path, subsets: dict[str, dict]) -> dict[str, str]:
    """Subset -> an earlier subset holding exactly the same documents (same article ids and texts),
    e.g. BE-French = BE-Base when the corpus has no French article to upsample. Only subsets of equal
    sizes are read and compared."""
    from pipelines.subsets.pipeline import read_documents

    def content(name: str) -> list[tuple]:
        return sorted((d.get("article_id"), d.get("text")) for d in read_documents(str(root), name))

    names = list(subsets)
    same: dict[str, str] = {}
    for i, name in enumerate(names):
        for other in names[:i]:
            if other in same or _size_key(subsets[name]) != _size_key(subsets[other]):
                continue
            try:
                if content(name) == content(other):
                    same[name] = other
                    break
            except (OSError, ValueError):
                continue
    return same


def _subsets_section(stats: dict | None, root: Path | None = None) -> str:
    title = "<section><h2>Subsets: sizes and tokens</h2>"
    if not stats or not stats.get("subsets"):
        return title + _na("Subsets") + "</section>"
    import matplotlib.pyplot as plt
    import numpy as np

    from pipelines.subsets.recipe import PAPER_PRESETS

    order = {name: i for i, name in enumerate(PAPER_PRESETS)}
    subsets = dict(sorted(stats["subsets"].items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    names = list(subsets)
    groups = sorted({g for s in subsets.values() for g in s["groups"]})
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.4))
    colors = {"commercial": "#3b6ea5", "noncommercial": "#e08a2c", "other": "#9aa5b1"}
    for ax, key in zip(axes, ("documents", "tokens"), strict=True):
        bottom = np.zeros(len(names))
        for g in groups:
            vals = np.array([subsets[n]["groups"].get(g, {}).get(key, 0) for n in names], dtype=float)
            ax.bar(names, vals, bottom=bottom, label=g, color=colors.get(g))
            bottom += vals
        ax.set_title(f"{key} (with repeats) by licence group")
        ax.tick_params(axis="x", labelsize=8, rotation=15)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)  # off the bars
    fig.tight_layout()
    rows = [
        [
            n,
            s["articles"],
            s["documents"],
            s["paragraphs"],
            s["tokens"],
            s["unique_tokens"],
            ", ".join(f"{g}: {s['groups'][g]['documents']}" for g in sorted(s["groups"])),
        ]
        for n, s in subsets.items()
    ]
    tokenizer = next(iter(subsets.values())).get("tokenizer", "whitespace")
    same = identical_subsets(root, subsets) if root else {}
    for row in rows:
        if row[0] in same:
            row[0] = f"{row[0]} (identical to {same[row[0]]})"
    note = "".join(
        f"<p><b>{html.escape(n)} is identical to {html.escape(o)}</b>: its recipe changed nothing on this "
        "corpus (e.g. no French article for BE-French to upsample).</p>"
        for n, o in same.items()
    )
    return (
        title + "<p>One document per article (copies counted for upsampled ones); tokens: "
        f"<code>{html.escape(tokenizer)}"
        "</code>. Each subset directory holds a Hugging Face dataset card (README.md).</p>"
        + note
        + png(fig)
        + table(
            [
                "subset",
                "articles",
                "documents",
                "paragraphs",
                "tokens",
                "unique tokens",
                "documents per licence group",
            ],
            rows,
        )
        + "</section>"
    )


def _raw_section(stats: dict[str, dict]) -> str:
    parts = [
        f"<details><summary>{html.escape(name)}_stats.json</summary><pre>"
        f"{html.escape(json.dumps(data, indent=1, default=str)[:20000])}</pre></details>"
        for name, data in stats.items()
    ]
    return (
        "<section><h2>Raw stage statistics</h2>" + ("".join(parts) or _na("Stage statistics")) + "</section>"
    )


def render_report(root: str | Path) -> str:
    """The report page for the run under `root`, as an HTML string."""
    import matplotlib

    matplotlib.use("Agg")
    root = as_path(root)  # a local directory or a bucket prefix alike
    stats = _stats_files(root)
    labels = _read_rows(root / "annotate" / "labels", ["document_type", "domain", "educational_score"])
    scored = _read_rows(
        root / "propagate" / "scored", ["document_type", "domain", "educational_score", "model_id"]
    )
    body = "".join(
        [
            _stages_section(root, stats),
            _labels_section(labels, scored),
            _scores_section(scored),
            models_section(root, [r.get("model_id") or "?" for r in scored] if scored else None),
            _agreement_section(root),
            _loop_section(root),
            _subsets_section(stats.get("subsets"), root / STAGE_DIRS["subsets"]),
            _raw_section(stats),
        ]
    )
    generated = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>biomed-enrich report</title><style>{_CSS}</style></head><body>"
        "<header><h1>biomed-enrich run report</h1>"
        f"<p>{html.escape(str(root))} &middot; generated {generated}</p>"
        f"</header><main>{body}</main></body></html>"
    )


def write_report(root: str, output: str | None = None) -> dict:
    """Write `<root>/report.html` (or `output`); returns where and how big."""
    page = render_report(root)
    path = as_path(output) if output else as_path(root) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return {"report": str(path), "bytes": len(page.encode())}
