"""The whole job on real demo articles: outputs, subset invariants, resuming, corruption, failures.

Uses a small slice of the bundled demo articles (case reports, a Portuguese article, an OAI-wrapped
namespaced record, research articles) with the demo's own settings, the replay teacher and the
frozen-encoder student, so it runs in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.orchestrate import STAGE_DIRS, ConfigError, StageFailed, load_config, run
from pipelines.recipe import load_recipe
from pipelines.schemas import LABELS, PARAGRAPHS, SCORED, SUBSET_DOCUMENTS
from pipelines.subsets import article_factor, read_documents

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo"
ARTICLES = [
    "PMC6092541.xml",  # case reports
    "PMC8160441.xml",
    "PMC7969973.xml",
    "PMC8023327.xml",
    "PMC10300000.xml",  # OAI-PMH wrapped, namespaced JATS
    "scielo__x.xml",  # Portuguese
    "PMC12061466.xml",
    "PMC6184427.xml",
    "PMC7890423.xml",
    "PMC8082418.xml",
]
DATA_STAGES = ("ingest", "annotate", "train", "propagate", "subsets")


def make_config(tmp: Path, inputs: list[str]) -> Path:
    config = yaml.safe_load((DEMO / "config.yaml").read_text())
    config["inputs"] = inputs
    config["output"] = str(tmp / "out")
    config["train"]["extra_labels_sample"] = 50  # exercise the extra labels, but keep embedding short
    config["train"]["head_epochs"] = 60
    config["train"]["cache_dir"] = str(tmp / "embedding-cache")  # hermetic: no shared embedding cache
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def state(root: Path) -> dict:
    return json.loads((root / "_run.json").read_text())["stages"]


def assert_schema(path: Path, schema) -> list[dict]:
    table = pq.read_table(path)
    for field in schema:
        assert field.name in table.column_names, (path, field.name)
        assert table.schema.field(field.name).type == field.type, (path, field.name)
    return table.to_pylist()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("e2e")
    (tmp / "articles").mkdir()
    for name in ARTICLES:
        shutil.copyfile(DEMO / "articles" / name, tmp / "articles" / name)
    cfg = load_config(make_config(tmp, [str(tmp / "articles")]))
    run(cfg, quiet=True)
    return Path(cfg.output)


def test_every_stage_output_exists_loads_and_has_its_schema(finished):
    paragraphs = assert_schema(finished / "ingest" / "paragraphs", PARAGRAPHS)
    labels = assert_schema(finished / "annotate" / "labels", LABELS)
    scored = assert_schema(finished / "propagate" / "scored", SCORED)
    assert {r["article_id"] for r in paragraphs} >= {"PMC6092541", "PMC10300000"}
    assert any(r["language"] == "pt" for r in paragraphs)
    assert labels and {r["id"] for r in labels} <= {r["id"] for r in paragraphs}
    assert sorted(r["id"] for r in scored) == sorted(r["id"] for r in paragraphs)
    assert (finished / "model" / "config.json").exists() and (finished / "model" / "agreement.json").exists()
    for name in ("BE-Base", "BE-Educational", "BE-Clinical", "BE-ClinicalCase", "BE-French", "BE-All"):
        files = list((finished / "subsets" / name).glob("*/part-*.parquet"))
        assert files and (finished / "subsets" / name / "README.md").exists()
        for f in files:
            assert_schema(f, SUBSET_DOCUMENTS)
    page = (finished / "report.html").read_text()
    assert "Subsets: sizes and tokens" in page and "data:image/png;base64," in page
    for stage in DATA_STAGES:
        assert state(finished)[stage]["status"] == "done"
        assert (finished / STAGE_DIRS[stage] / "_manifest.json").exists()


def test_subsets_keep_order_filter_and_repeat_exactly(finished):
    scored = pq.read_table(finished / "propagate" / "scored").to_pylist()
    by_article: dict[str, list[dict]] = {}
    for r in scored:
        by_article.setdefault(r["article_id"], []).append(r)
    out = str(finished / "subsets")

    for doc in read_documents(out, "BE-Base"):  # body order, paragraphs whole
        rows = sorted(by_article[doc["article_id"]], key=lambda r: r["paragraph_index"])
        assert doc["text"].split("\n\n") == [r["text"] for r in rows]

    score_of = {r["text"]: r["educational_score"] for r in scored}
    educational = [p for d in read_documents(out, "BE-Educational") for p in d["text"].split("\n\n")]
    assert educational and all(score_of[p] >= 3 for p in educational)
    assert len(educational) == sum(1 for r in scored if r["educational_score"] >= 3)

    upsampled = 0
    for name in ("BE-Clinical", "BE-ClinicalCase", "BE-All"):
        recipe = load_recipe(name)
        copies: dict[str, int] = {}
        for d in read_documents(out, name):
            copies[d["article_id"]] = copies.get(d["article_id"], 0) + 1
        for article_id, count in copies.items():
            factor = article_factor(by_article[article_id], recipe)[0]
            assert count == factor, (name, article_id)
            upsampled += factor > 1
    assert upsampled > 0  # the case reports qualify


def test_rerun_skips_finished_stages_and_corruption_is_redone(finished):
    cfg = load_config(finished.parent / "config.yaml")
    manifests = {s: (finished / STAGE_DIRS[s] / "_manifest.json").read_text() for s in DATA_STAGES}
    mtimes = {p: p.stat().st_mtime_ns for p in finished.rglob("*.parquet")}

    run(cfg, quiet=True)
    assert all(state(finished)[s]["status"] == "skipped" for s in DATA_STAGES)
    assert manifests == {s: (finished / STAGE_DIRS[s] / "_manifest.json").read_text() for s in DATA_STAGES}
    assert mtimes == {p: p.stat().st_mtime_ns for p in finished.rglob("*.parquet")}
    assert "propagate: skipped" in (finished / "run.log").read_text()

    victim = sorted((finished / "propagate" / "scored").glob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:200])  # truncated shard
    run(cfg, quiet=True)
    stages = state(finished)
    assert stages["propagate"]["status"] == "done"
    assert "propagate: running (size of scored/" in (finished / "run.log").read_text()
    assert all(stages[s]["status"] == "skipped" for s in ("ingest", "annotate", "train"))
    assert pq.read_table(finished / "propagate" / "scored").num_rows == sum(
        1 for _ in pq.read_table(finished / "ingest" / "paragraphs").to_pylist()
    )
    manifest = json.loads((finished / "propagate" / "_manifest.json").read_text())
    assert manifest != json.loads(manifests["propagate"])  # a new manifest was written


def test_missing_inputs_are_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(make_config(tmp_path, [str(tmp_path / "no-such-input")]))


def test_a_failing_stage_is_retried_then_reported(tmp_path):
    (tmp_path / "empty").mkdir()  # exists, but holds no article: ingest writes no paragraph
    cfg = load_config(make_config(tmp_path, [str(tmp_path / "empty")]))
    with pytest.raises(StageFailed, match="ingest wrote no paragraphs"):
        run(cfg, quiet=True)
    stages = state(Path(cfg.output))
    assert stages["ingest"]["status"] == "failed" and stages["ingest"]["attempt"] == 2
    assert stages["ingest"]["error"]
    log = (Path(cfg.output) / "run.log").read_text()
    assert "attempt 1 failed" in log and "attempt 2 failed" in log
    assert "annotate" not in stages
