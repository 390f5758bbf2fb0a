"""run_ingest on Beam: all input forms, bad input dead-lettered, Direct and Portable runners."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ingest_fixtures import FILELIST_HEADER, hostile_documents, make_package

from pipelines.core import schemas
from pipelines.core.io import read_table
from pipelines.ingest import jats
from pipelines.ingest.pipeline import article_rows, license_from_code, run_ingest


def dead_letters(out: Path) -> list[dict]:
    return [
        json.loads(line)
        for f in sorted((out / "dead_letter").glob("ingest-*.jsonl"))
        for line in f.read_text().splitlines()
    ]


def check_outputs(out: Path) -> tuple[list[dict], dict]:
    files = sorted((out / "paragraphs").glob("part-*.parquet"))
    assert files
    for f in files:
        schema = pq.read_schema(f)
        assert schema.equals(schemas.PARAGRAPHS, check_metadata=False), f
    rows = read_table([str(out / "paragraphs")]).to_pylist()
    stats = json.loads((out / "ingest_stats.json").read_text())
    assert stats["articles_read"] == stats["articles_parsed"] + stats["articles_dead_lettered"]
    assert stats["paragraphs_written"] == len(rows)
    # Superseded copies of an article get a dead-letter line too (reason `superseded`), counted apart.
    assert stats["articles_dead_lettered"] + stats["articles_superseded"] == len(dead_letters(out))
    assert stats["text_rendering"] == jats.TEXT_RENDERING
    assert sum(stats.get("paragraphs_by_license_group", {}).values()) == len(rows)
    assert sum(stats.get("paragraphs_by_language", {}).values()) == len(rows)
    return rows, stats


@pytest.fixture(scope="module")
def direct_run(pmc_sample, tmp_path_factory):
    """One DirectRunner run over all input forms: files, glob, tar.gz + file list, cloud layout, bad files."""
    tmp = tmp_path_factory.mktemp("ingest")
    inputs = tmp / "inputs"
    (inputs / "files").mkdir(parents=True)
    for name in ["PMC4735918.xml", "PMC1240239.xml", "scielo__0034-8910-rsp-48-2-0326.xml"]:
        (inputs / "files" / name).write_bytes((pmc_sample / name).read_bytes())
    truncated = (pmc_sample / "PMC10167360.xml").read_bytes()
    bad = {
        "empty.xml": b"",
        "truncated.xml": truncated[: len(truncated) // 2],
        "webpage.xml": b"<html><body><p>A web page.</p></body></html>",
        "garbage.nxml": b"\x00\x01 not xml",
        # Port 9 (discard): nothing may connect there, and the parser must not try.
        **{f"{name}.xml": data for name, data in hostile_documents(9).items()},
    }
    (inputs / "bad").mkdir()
    for name, data in bad.items():
        (inputs / "bad" / name).write_bytes(data)
    package_dir = inputs / "bulk"
    package_dir.mkdir()
    package = make_package(pmc_sample, package_dir, ["PMC2852030.xml", "PMC10167360.xml"])
    (package_dir / "oa_comm_xml.PMC000xxxxxx.baseline.2026-01-01.filelist.csv").write_text(
        FILELIST_HEADER
        + 'PMC000xxxxxx/PMC2852030.xml,"Abdom Imaging",PMC2852030,"2024-02-07",18987909,"CC BY-NC",yes\n'
        + 'PMC000xxxxxx/PMC10167360.xml,"Sci Rep",PMC10167360,"2024-02-07",37156854,"CC BY-NC",no\n'
    )
    cloud = inputs / "cloud"
    (cloud / "metadata").mkdir(parents=True)
    # Two versions of one article (PMC Cloud): version 2 is kept, version 1 superseded, whatever the order.
    original = (pmc_sample / "PMC4500000.xml").read_bytes()
    for version, data in ((1, original), (2, original.replace(b"Stroke manifestations", b"Stroke signs"))):
        (cloud / f"PMC4500000.{version}").mkdir()
        (cloud / f"PMC4500000.{version}" / f"PMC4500000.{version}.xml").write_bytes(data)
        (cloud / "metadata" / f"PMC4500000.{version}.json").write_text(
            json.dumps({"pmcid": "PMC4500000", "is_retracted": True})
        )
    filelist = inputs / "extra.filelist.csv"
    filelist.write_text(
        FILELIST_HEADER
        + 'PMC004xxxxxx/PMC4735918.xml,"Case Rep Urol. 2016",PMC4735918,"2024-01-01",26881177,"CC BY",no\n'
    )
    out = tmp / "out"
    stats = run_ingest(
        [
            str(inputs / "files" / "*.xml"),
            str(inputs / "bad"),
            str(package),
            str(cloud),
            str(filelist),
            str(inputs / "missing.xml"),
        ],
        str(out),
    )
    return out, stats


def test_direct_run_outputs_conform_and_reconcile(direct_run):
    out, stats = direct_run
    rows, written_stats = check_outputs(out)
    assert stats == written_stats
    # 3 files + 2 package members + 2 cloud versions parsed; 8 bad files + 1 missing file dead-lettered.
    assert (stats["articles_read"], stats["articles_parsed"], stats["articles_dead_lettered"]) == (16, 7, 9)
    assert stats["articles_superseded"] == 1 and stats["paragraphs_superseded"] > 0
    # Rows name their file relative to the input as given: no machine directories.
    assert not any(r["source"].startswith("/") for r in rows)
    assert {r["source"] for r in rows if r["article_id"] == "PMC4735918"} == {"files/PMC4735918.xml"}
    assert stats["articles_without_body"] == 1
    assert stats["paragraphs_by_language"]["pt"] > 0 and stats["paragraphs_by_language"]["en"] > 0
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    assert all(len(r["text"].split()) >= 64 for r in rows)
    by_article: dict[str, list[dict]] = {}
    for r in rows:
        by_article.setdefault(r["article_id"], []).append(r)
    for article_rows_ in by_article.values():
        assert sorted(r["paragraph_index"] for r in article_rows_) == list(range(len(article_rows_)))


def test_bad_inputs_are_dead_lettered_with_reasons(direct_run):
    out, _ = direct_run
    reasons = {Path(d["source"]).name: d["reason"] for d in dead_letters(out) if d["reason"] != "superseded"}
    assert reasons == {
        "empty.xml": "empty",
        "truncated.xml": "malformed_xml",
        "webpage.xml": "not_jats",
        "garbage.nxml": "malformed_xml",
        "xxe_file.xml": "hostile_xml",
        "xxe_http.xml": "hostile_xml",
        "parameter_entity.xml": "hostile_xml",
        "billion_laughs.xml": "hostile_xml",
        "missing.xml": "unreadable_file",
    }
    assert all(d["stage"] == "ingest" and d["source"] for d in dead_letters(out))


def test_only_the_latest_version_of_an_article_is_written(direct_run):
    out, stats = direct_run
    rows = [r for r in read_table([str(out / "paragraphs")]).to_pylist() if r["article_id"] == "PMC4500000"]
    assert {r["source"] for r in rows} == {"cloud/PMC4500000.2/PMC4500000.2.xml"}
    assert rows[0]["path"] == "sec[0]/p[0]" and rows[0]["text"].startswith("Stroke signs")
    assert len({r["id"] for r in rows}) == len(rows)
    [old] = [d for d in dead_letters(out) if d["reason"] == "superseded"]
    assert old["source"] == "cloud/PMC4500000.1/PMC4500000.1.xml" and "version 2" in old["detail"]


def test_filelist_and_cloud_metadata_fill_in_but_never_override(direct_run):
    out, _ = direct_run
    rows = read_table([str(out / "paragraphs")]).to_pylist()
    by_article = {r["article_id"]: r for r in rows}
    # No licence in the XML: the package's file list gives CC BY-NC; its Retracted=yes is carried.
    old = by_article["PMC2852030"]
    assert (old["license_group"], old["retracted"], old["pmid"]) == ("noncommercial", True, "18987909")
    assert "!PMC000xxxxxx/PMC2852030.xml" in old["source"]
    # The article's own CC BY (ali:license_ref) wins over the file list's CC BY-NC.
    own = by_article["PMC10167360"]
    assert (own["license_group"], own["license_url"]) == (
        "commercial",
        "https://creativecommons.org/licenses/by/4.0/",
    )
    # An explicit file-list CSV fills the PMID the XML lacks.
    assert by_article["PMC4735918"]["pmid"] == "26881177"
    # Cloud metadata JSON: retraction flag.
    assert by_article["PMC4500000"]["retracted"] is True
    pt = [r for r in rows if r["article_id"] == "doi:10.1590/S0034-8910.2014048004940"]
    assert pt and all(r["language"] == "pt" and r["language_score"] > 0.5 for r in pt)


def test_portable_runner_embedded_job_service(pmc_sample, tmp_path):
    cloud = tmp_path / "cloud"  # two versions of one article: the latest is kept on this runner too
    for version in (1, 2):
        (cloud / f"PMC4500000.{version}").mkdir(parents=True)
        (cloud / f"PMC4500000.{version}" / f"PMC4500000.{version}.xml").write_bytes(
            (pmc_sample / "PMC4500000.xml").read_bytes()
        )
    out = tmp_path / "out"
    stats = run_ingest(
        [str(pmc_sample / "PMC4735918.xml"), str(cloud)],
        str(out),
        beam_args=["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"],
    )
    rows, _ = check_outputs(out)
    assert stats["articles_parsed"] == 3 and stats["articles_superseded"] == 1
    assert {r["article_id"] for r in rows} == {"PMC4735918", "PMC4500000"}
    assert {r["source"] for r in rows if r["article_id"] == "PMC4500000"} == {
        "cloud/PMC4500000.2/PMC4500000.2.xml"
    }
    assert len({r["id"] for r in rows}) == len(rows)


def test_min_tokens_and_licence_codes(pmc_sample):
    from pipelines.ingest import jats

    article = jats.parse_article((pmc_sample / "PMC4735918.xml").read_bytes(), "PMC4735918")
    all_rows = article_rows(article, "src", min_tokens=0)
    assert len(all_rows) == len(article.paragraphs)
    long_rows = article_rows(article, "src", min_tokens=64)
    assert [r["path"] for r in long_rows] == [p.path for p in article.paragraphs if p.n_tokens >= 64]
    assert [r["paragraph_index"] for r in long_rows] == list(range(len(long_rows)))
    assert license_from_code("CC BY-NC-SA") == "noncommercial"
    assert license_from_code("CC0") == "commercial"
    assert license_from_code("NO-CC CODE") == "other"


def test_corrupt_package_keeps_members_read_before_the_error(pmc_sample, tmp_path):
    from pipelines.ingest.pipeline import ReadTask
    from pipelines.ingest.sources import Task

    package = make_package(pmc_sample, tmp_path, ["PMC4735918.xml", "PMC10167360.xml"])
    data = package.read_bytes()
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(data[: len(data) * 2 // 3])  # cut inside the second member
    outputs = list(ReadTask().process(Task(str(broken), "tar")))
    payloads = [o for o in outputs if isinstance(o, tuple)]
    dead = [o.value for o in outputs if getattr(o, "tag", None) == "dead"]
    assert [p[0] for p in payloads] == [f"{broken}!PMC000xxxxxx/PMC4735918.xml"]  # no display name given
    assert [d["reason"] for d in dead] == ["unreadable_package"]
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not a gzip stream at all")
    dead = [
        o.value for o in ReadTask().process(Task(str(garbage), "tar")) if getattr(o, "tag", None) == "dead"
    ]
    assert [d["reason"] for d in dead] == ["unreadable_package"]


def test_an_input_that_names_nothing_stops_the_run_before_it_starts(tmp_path, pmc_sample):
    from typer.testing import CliRunner

    from pipelines.app.cli import app

    real = str(pmc_sample / "PMC10300000.xml")
    with pytest.raises(FileNotFoundError, match="no-such-folder"):
        run_ingest([real, str(tmp_path / "no-such-folder")], str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "typo*.xml"), "--output", str(tmp_path / "o")])
    assert result.exit_code == 2 and "typo" in result.output


def test_latest_copy_wins_whatever_the_order():
    from pipelines.ingest.pipeline import Candidate, choose_latest

    v1 = Candidate("oa/PMC1.1/PMC1.1.xml", [], {}, version=1, file_updated="2026-03-01T00:00:00Z")
    v2 = Candidate("oa/PMC1.2/PMC1.2.xml", [], {}, version=2, file_updated="2026-01-01T00:00:00Z")
    bulk = Candidate("bulk.tar.gz!PMC1.xml", [], {}, last_updated="2024-02-07 23:35:31")
    incr = Candidate("incr.tar.gz!PMC1.xml", [], {}, last_updated="2025-06-01 10:00:00")
    for order in ([v1, v2], [v2, v1]):
        assert choose_latest(order) == (v2, [v1])  # the version decides before any date
    for order in ([bulk, incr], [incr, bulk]):
        assert choose_latest(order) == (incr, [bulk])  # then the file list's LastUpdated


def test_the_lossy_multi_threading_direct_mode_is_refused_before_the_run(tmp_path, pmc_sample):
    """Beam 2.77's DirectRunner loses GroupByKey elements in `multi_threading` mode with several workers
    (pipelines/core/options.py): a run asking for it stops with the mode to use, nothing written."""
    real = [str(pmc_sample / "PMC10300000.xml")]
    lossy = ["--direct_num_workers=2", "--direct_running_mode=multi_threading"]
    with pytest.raises(ValueError, match="multi_processing"):
        run_ingest(real, str(tmp_path / "out"), beam_args=lossy)
    assert not (tmp_path / "out").exists()
    single = ["--direct_num_workers=1", "--direct_running_mode=multi_threading"]
    assert run_ingest(real, str(tmp_path / "one"), beam_args=single)["articles_read"] == 1
