"""The run report: self-contained HTML with the expected sections, and a real headless-browser screenshot."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from subsets_scored import scored_rows, write_scored

from pipelines.app.report import PAPER_SCORE_TABLE, score_distribution, write_report
from pipelines.core.io import write_table
from pipelines.core.schemas import LABELS, conform
from pipelines.subsets.pipeline import run_subsets

WIDTH, HEIGHT = 1280, 2000


@pytest.fixture(scope="module")
def run_root(teacher_labels, tmp_path_factory) -> Path:
    """A run directory laid out as `biomed-enrich run` writes it, from real paragraphs and labels."""
    root = tmp_path_factory.mktemp("run")
    rows = scored_rows(teacher_labels, max_articles=120)
    write_scored(rows, root / "propagate")
    labels = pq.read_table(teacher_labels).slice(0, 600)
    n = labels.num_rows
    labels = labels.append_column("teacher_model", pa.array(["replay"] * n)).append_column(
        "prompt_version", pa.array(["v1"] * n)
    )
    write_table(
        conform(labels.select([c for c in labels.column_names if c in LABELS.names]), LABELS),
        str(root / "annotate"),
        "labels",
    )
    (root / "annotate" / "annotate_stats.json").write_text(
        json.dumps({"read": n, "written": n, "cost_usd": 0.0})
    )
    (root / "model").mkdir()
    (root / "model" / "agreement.json").write_text(
        json.dumps(  # the layout distill.train writes (headline metrics, paper reference, confusion matrices)
            {
                "headline": {"document_type_f1": 0.71, "domain_f1": 0.84, "educational_score_pearson": 0.66},
                "paper": {
                    "document_type": {"f1": 0.925},
                    "domain": {"f1": 0.954},
                    "educational_score": {"pearson": 0.876},
                },
                "sizes": {"held_out": 60, "train": 480},
                "mode": "frozen_encoder",
                "domain": {
                    "macro_f1": 0.84,
                    "confusion_matrix": {
                        "labels": ["biomedical", "clinical", "other"],
                        "matrix": [[30, 2, 1], [3, 12, 0], [2, 0, 10]],
                    },
                },
            }
        )
    )
    run_subsets([str(root / "propagate" / "scored")], "BE-Base,BE-Educational", str(root / "subsets"))
    (root / "_run.json").write_text(json.dumps({"stages": {"subsets": {"status": "done", "seconds": 12.5}}}))
    write_report(str(root))
    return root


def test_report_is_self_contained_with_every_section(run_root):
    page = (run_root / "report.html").read_text()
    for heading in (
        "Stages: throughput and cost",
        "Label distributions",
        "Educational score by document type and domain, next to the paper",
        "Student vs teacher agreement",
        "Subsets: sizes and tokens",
    ):
        assert heading in page
    images = re.findall(r'<img alt="plot" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) >= 6  # stages, labels, scores, agreement, confusion matrix, subsets
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from the network
    assert "78.7" in page and "BE-Educational" in page  # the paper's Study row and our subsets
    assert "0.925" in page and "0.710" in page  # agreement next to the paper's student


def test_score_table_matches_the_scored_paragraphs(run_root):
    rows = pq.read_table(run_root / "propagate" / "scored").to_pylist()
    ours = score_distribution(rows, "document_type")
    assert set(ours) <= set(PAPER_SCORE_TABLE)
    for shares in ours.values():
        assert sum(shares) == pytest.approx(100.0)
        assert f"{shares[2]:.1f}" in (run_root / "report.html").read_text()


def test_report_survives_a_partial_run(tmp_path):
    write_report(str(tmp_path))
    page = (tmp_path / "report.html").read_text()
    assert page.count("not available in this run") >= 4


def test_report_renders_in_a_headless_browser(run_root, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("chromium not installed (apt-get install -y chromium): screenshot check skipped")
    shot = tmp_path / "report.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--screenshot={shot}",
                f"--window-size={WIDTH},{HEIGHT}",
                (run_root / "report.html").as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (WIDTH, HEIGHT)
    pixels = list(image.getdata())
    mean = sum(pixels) / len(pixels)
    variance = sum((p - mean) ** 2 for p in pixels) / len(pixels)
    assert variance > 200  # text, tables and plots, not a blank or single-colour page
    dark = sum(p < 100 for p in pixels) / len(pixels)
    assert 0.01 < dark < 0.5  # the header bar and text render, the page is not black


def test_confusion_cells_stay_readable_and_error_metrics_are_charted_apart():
    from pipelines.app.report import lower_is_better, text_color

    assert text_color(40, 40) == "white" and text_color(1, 40) != "white"  # dark cell, light cell
    assert lower_is_better("educational_score_mae")
    higher = ("document_type_f1", "domain_kappa", "educational_score_pearson")
    assert not any(lower_is_better(m) for m in higher)


def test_report_marks_an_unfinished_run(tmp_path):
    (tmp_path / "_run.json").write_text(
        json.dumps(
            {"stages": {"ingest": {"status": "done"}, "annotate": {"status": "failed", "error": "boom"}}}
        ),
    )
    page = (Path(write_report(str(tmp_path))["report"])).read_text()
    assert "This run did not finish" in page and "annotate failed: boom" in page
