"""The report's annotation-loop section, from a real tiny loop: real labelled paragraphs, real MiniLM
embeddings (max length 16), the replay teacher, held-out articles for agreement."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq

from annotators.sampling import uniform_draw
from pipelines.app.loop import article_key, run_loop_from_paths
from pipelines.app.report import write_report

SECTION = "Agreement vs teacher labels spent"
N_ROWS = 160


def test_report_plots_the_loop_curve(teacher_labels, tmp_path):
    rows = pq.read_table(teacher_labels).slice(0, N_ROWS).to_pylist()
    held = {a for a in {article_key(r) for r in rows} if uniform_draw(7, a) < 0.2}
    held_out = [r for r in rows if article_key(r) in held]
    assert 0 < len(held_out) < len(rows)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "paragraphs.parquet")
    pq.write_table(pa.Table.from_pylist(held_out), tmp_path / "eval.parquet")
    root = tmp_path / "run"

    write_report(str(root))  # before the loop: no loop_stats.json, no section
    assert SECTION not in (root / "report.html").read_text()

    stats = run_loop_from_paths(
        [str(tmp_path / "paragraphs.parquet")],
        str(root),
        eval_labels=[str(tmp_path / "eval.parquet")],
        recordings=str(teacher_labels),
        max_length=16,
        budget=60,
        rounds=2,
        seed_size=20,
        mc_passes=4,
    )
    assert json.loads((root / "loop_stats.json").read_text())["curve"] == stats["curve"]
    write_report(str(root))
    page = (root / "report.html").read_text()
    assert SECTION in page
    section = page[page.index(SECTION) : page.index("</section>", page.index(SECTION))]
    assert re.search(r'<img alt="plot" src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}">', section)
    # one table row per round, with the labels spent and the agreement the loop measured
    assert [p["labels"] for p in stats["curve"]] == [20, 40, 60]
    for point in stats["curve"]:
        assert f"<td>{point['labels']}</td><td>{point['agreement']:,.3f}</td>" in section
    assert "educational_score_pearson" in section and "stopped: budget" in section
