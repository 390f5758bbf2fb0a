"""The whole job on real demo articles: outputs, subset invariants, resuming, corruption, failures.

Uses a small slice of the bundled demo articles (case reports, a Portuguese article, an OAI-wrapped
namespaced record, research articles) with the demo's own settings, the replay teacher and the
frozen-encoder student, so it runs in a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipelines.app.orchestrate import STAGE_DIRS, ConfigError, StageFailed, load_config, run
from pipelines.core.schemas import LABELS, PARAGRAPHS, SCORED, SUBSET_DOCUMENTS
from pipelines.subsets.pipeline import article_factor, read_documents
from pipelines.subsets.recipe import load_recipe

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


def test_an_empty_input_fails_at_once_and_the_old_report_is_not_left_stale(tmp_path):
    (tmp_path / "empty").mkdir()  # exists, but holds no article: ingest finds nothing to read
    cfg = load_config(make_config(tmp_path, [str(tmp_path / "empty")]))
    Path(cfg.output).mkdir(parents=True)
    (Path(cfg.output) / "report.html").write_text("<p>subsets: 6 subsets written</p>")  # an earlier run's
    with pytest.raises(StageFailed, match="ingest found nothing to read"):
        run(cfg, quiet=True)
    stages = state(Path(cfg.output))
    assert stages["ingest"]["status"] == "failed" and stages["ingest"]["attempt"] == 1  # not retried
    log = (Path(cfg.output) / "run.log").read_text()
    assert "ingest: failed" in log and "attempt 2" not in log
    assert "annotate" not in stages
    page = (Path(cfg.output) / "report.html").read_text()
    assert "This run did not finish" in page and "6 subsets written" not in page


def test_allow_empty_lets_an_empty_stage_pass(tmp_path):
    from pipelines.core.summary import EmptyOutput, check_output, summarize

    (tmp_path / "empty").mkdir()
    stats = {"articles_read": 0, "paragraphs_written": 0}
    with pytest.raises(EmptyOutput, match="found nothing to read"):
        check_output(summarize("ingest", stats, str(tmp_path)))
    check_output(summarize("ingest", stats, str(tmp_path)), allow_empty=True)


def _stage(tmp_path, name, errors):
    """A stage whose run raises the given errors in turn, then succeeds."""
    from pipelines.app.orchestrate import Stage

    calls = []

    def go():
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return {}

    return Stage(name, str(tmp_path / name), [], {}, go), calls


def test_only_failures_a_retry_can_fix_are_retried(tmp_path):
    from pipelines.app.orchestrate import RunConfig, RunLog, _run_stage

    cfg = RunConfig(output=str(tmp_path), inputs=[], retries=2)
    log = RunLog(tmp_path, quiet=True)
    flaky, calls = _stage(tmp_path, "flaky", [OSError("connection reset")])
    _run_stage(flaky, cfg, log, "[1/1] flaky")
    assert len(calls) == 2 and log.state["stages"]["flaky"]["status"] == "done"
    permanent = (TypeError("unexpected keyword 'min_token'"), ValueError("bad"), FileNotFoundError("x"))
    for error in permanent:
        wrong, calls = _stage(tmp_path, "wrong", [error, error, error])
        with pytest.raises(StageFailed):
            _run_stage(wrong, cfg, log, "[1/1] wrong")
        assert len(calls) == 1, error


@pytest.mark.parametrize(
    "section, value, message",
    [
        ("ingest", {"min_token": 10}, "unknown key 'min_token' (did you mean 'min_tokens'?)"),
        ("ingest", {"min_tokens": "ten"}, "min_tokens must be int"),
        ("subsets", {"recipe": "paper"}, "unknown key 'recipe' (did you mean 'recipes'?)"),
        ("subsets", {"recipes": "BE-Frensh"}, "BE-Frensh"),
        ("train", {"head_epoch": 3}, "did you mean 'head_epochs'"),
        ("train", {"extra_labels": ["missing.parquet"]}, "missing.parquet does not exist"),
        ("annotate", {"teacher": "openai"}, "needs 'model'"),
        ("annotate", {"concurency": 4}, "unknown key 'concurency'"),
        ("propagate", {"batch_tokens": "many"}, "batch_tokens must be"),
    ],
)
def test_every_stage_section_is_checked_before_the_first_stage(tmp_path, section, value, message):
    from typer.testing import CliRunner

    from pipelines.app.cli import app

    path = make_config(tmp_path, [str(DEMO / "articles" / ARTICLES[0])])
    config = yaml.safe_load(path.read_text())
    config[section] = value
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path)
    if section != "ingest":
        return  # the command's side once is enough
    result = CliRunner().invoke(app, ["run", "--config", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: config section") and message in lines[0]
    assert not (tmp_path / "out").exists()  # nothing ran


def test_every_stage_ends_with_a_summary_line(finished):
    log = (finished / "run.log").read_text()
    assert re.search(r"ingest: done in [\d.]+s: read 10 articles, wrote \d+ paragraphs", log)
    annotate = re.search(r"annotate: done in .*", log).group(0)
    assert "dead-lettered" in annotate and "no_recording" in annotate
    assert str(finished / "annotate" / "dead_letter") in annotate
    assert re.search(r"propagate: done in .*wrote \d+ scored", log)
    assert re.search(r"subsets: done in .*documents in 6 subsets", log)


def test_report_points_out_identical_subsets_and_lists_the_report_stage(finished):
    page = (finished / "report.html").read_text()
    # none of the ten articles is French: BE-French upsamples nothing and equals BE-Base
    assert "BE-French is identical to BE-Base" in page
    assert "<td>report</td>" in page


def test_a_copied_output_directory_resumes_with_every_stage_skipped(finished, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(finished, copy)
    before = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*.parquet")}
    run(load_config(finished.parent / "config.yaml", output=str(copy)), quiet=True)
    assert all(state(copy)[s]["status"] == "skipped" for s in DATA_STAGES)
    assert before == {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*.parquet")}
    manifest = json.loads((copy / "propagate" / "_manifest.json").read_text())
    assert manifest["inputs"] == ["ingest", "model"]  # relative to the run root


def test_sigint_during_a_beam_stage_stops_at_once_and_resumes_to_the_same_outputs(finished, tmp_path):
    """A real `run` process gets a real SIGINT while propagate (a Beam pipeline) scores paragraphs."""
    root = tmp_path / "interrupted"
    shutil.copytree(finished, root)
    for stage in ("propagate", "subsets"):
        shutil.rmtree(root / stage)
    command = [sys.executable, "-m", "pipelines.app.cli", "run", "-c", str(finished.parent / "config.yaml")]
    proc = subprocess.Popen(
        [*command, "-o", str(root)],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    err, deadline = b"", time.time() + 900
    while proc.poll() is None and time.time() < deadline:
        if select.select([proc.stderr], [], [], 0.5)[0]:
            err += os.read(proc.stderr.fileno(), 4096)
        started = err.partition(b"propagate: running")[2]
        if b"propagate:" in started:  # its progress bar: the pipeline is scoring
            proc.send_signal(signal.SIGINT)
            break
    rc = proc.wait(timeout=120)
    err = (err + proc.stderr.read()).decode()
    assert rc == 130, err
    assert "Traceback" not in err and "attempt" not in err
    after = err.partition("propagate: running")[2].partition("\n")[2]
    lines = [line for line in after.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1] == "interrupted (SIGINT) during propagate: stopped; rerun the same command to resume"
    assert not [line for line in lines if not line.startswith(("propagate:", "Loading", "interrupted"))]
    assert state(root)["propagate"]["status"] == "interrupted"
    assert not (root / "propagate" / "_manifest.json").exists()
    assert all((root / STAGE_DIRS[s] / "_manifest.json").exists() for s in ("ingest", "annotate", "train"))

    run(load_config(finished.parent / "config.yaml", output=str(root)), quiet=True)
    stages = state(root)
    assert [stages[s]["status"] for s in DATA_STAGES] == ["skipped"] * 3 + ["done"] * 2
    scored = pq.read_table(root / "propagate" / "scored").sort_by("id")
    assert scored.equals(pq.read_table(finished / "propagate" / "scored").sort_by("id"))
    for name in ("BE-Base", "BE-ClinicalCase", "BE-All"):
        assert read_documents(str(root / "subsets"), name) == read_documents(str(finished / "subsets"), name)
