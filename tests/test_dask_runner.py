"""Every stage on Dask (`--runner=dask`) against a real LocalCluster of 2 worker processes.

Real PMC articles go through ingest -> propagate -> subsets, and real teacher-labelled paragraphs
through annotate (replay teacher and the fake OpenAI server), once on DirectRunner and once on the
cluster; outputs are compared row for row (sorted by id). Dask's task stream says which worker ran
each Beam transform (tasks are named after the transform), so the tests also check that the work
was spread over both worker processes and that the student was loaded at most once per process.
`run --config` uses `--runner=dask` without an address: the runner starts its own cluster and stops
it (no worker process survives the run).
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

distributed = pytest.importorskip("dask.distributed", reason="the Dask runner needs biomed-enrich[dask]")
psutil = pytest.importorskip("psutil")

N_ARTICLES = 20  # ingested; propagate and subsets take the paragraphs of the first N_SCORED of them
N_SCORED = 4
SCORE_COLUMNS = ("document_type", "domain", "educational_score", "model_id")


def rows(path: Path, columns: list[str] | None = None) -> list[dict]:
    files = sorted(str(p) for p in path.glob("part-*.parquet"))
    return sorted(pq.read_table(files, columns=columns).to_pylist(), key=lambda r: r["id"])


def dead_letters(root: Path, stage: str) -> list[str]:
    return sorted(
        line for f in (root / "dead_letter").glob(f"{stage}-*.jsonl") for line in f.read_text().splitlines()
    )


def children() -> set[int]:
    """Our child processes, without multiprocessing's resource tracker (it lives as long as we do)."""
    return {
        p.pid
        for p in psutil.Process().children(recursive=True)
        if not any("resource_tracker" in part for part in p.cmdline())
    }


@pytest.fixture(scope="module")
def cluster():
    """One cluster for the module (worker start-up and imports are paid once), closed at the end."""
    before = children()
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        distributed.Client(local) as client,
    ):
        pids = set(client.run(os.getpid).values())
        yield {"address": local.scheduler_address, "client": client, "pids": pids}
    assert not children() - before, "worker processes left behind"
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)


def test_short_flags_choose_the_dask_runner():
    from apache_beam.runners.dask.dask_runner import DaskOptions

    from pipelines.core.dask_runner import RUNNER, LocalClusterOptions
    from pipelines.core.options import pipeline_options

    options = pipeline_options(["--runner=dask", "--dask_address=tcp://10.0.0.5:8786"])
    assert options.get_all_options()["runner"] == RUNNER
    assert options.view_as(DaskOptions).address == "tcp://10.0.0.5:8786"
    local = pipeline_options(["--runner=DaskRunner", "--dask_workers=3"])
    assert local.get_all_options()["runner"] == RUNNER and local.view_as(DaskOptions).address is None
    assert local.view_as(LocalClusterOptions).dask_workers == 3
    assert pipeline_options([]).get_all_options()["runner"] == "DirectRunner"


def on_dask(cluster, *extra: str) -> list[str]:
    return ["--runner=dask", f"--dask_address={cluster['address']}", *extra]


def workers_that_ran(stream: list[dict], label: str) -> set[str]:
    """Workers that ran the tasks of the Beam transform whose task name starts with `label`."""
    return {t["worker"] for t in stream if str(t["key"]).lstrip("('\"").startswith(label)}


@pytest.fixture(scope="module")
def articles(pmc_sample: Path) -> list[str]:
    return [str(p) for p in sorted(pmc_sample.glob("PMC*.xml"))[:N_ARTICLES]]


@pytest.fixture(scope="module")
def ingested(articles, cluster, tmp_path_factory) -> dict:
    from pipelines.ingest.pipeline import run_ingest

    root = tmp_path_factory.mktemp("ingest")
    direct = run_ingest(articles, str(root / "direct"))
    with distributed.get_task_stream(cluster["client"]) as stream:
        dask = run_ingest(articles, str(root / "dask"), beam_args=on_dask(cluster))
    return {"root": root, "direct": direct, "dask": dask, "stream": stream.data}


def test_ingest_on_dask_equals_direct(ingested):
    root = ingested["root"]
    direct, dask = rows(root / "direct" / "paragraphs"), rows(root / "dask" / "paragraphs")
    assert len(direct) > 200 and dask == direct
    assert ingested["dask"] == ingested["direct"] | {"inputs": ingested["dask"]["inputs"]}
    assert ingested["dask"]["articles_read"] == N_ARTICLES
    assert dead_letters(root / "dask", "ingest") == dead_letters(root / "direct", "ingest")
    # Which workers parsed is the scheduler's choice (a worker still importing gets nothing): the spread
    # over both processes is asserted on propagate, where it matters (one model per process).
    assert workers_that_ran(ingested["stream"], "Parse")


@pytest.fixture(scope="module")
def student(teacher_labels: Path, tmp_path_factory) -> Path:
    from distill.quick_student import build_quick_student

    return build_quick_student(
        teacher_labels, tmp_path_factory.mktemp("student"), n=64, embed_max_length=48, max_seq_length=64
    )


def first_articles(paragraphs: Path, out: Path, n: int) -> list[str]:
    """The paragraphs of the first `n` articles, as a 2-shard dataset (keeps scoring short on 2 cores)."""
    table = pq.read_table(sorted(str(p) for p in paragraphs.glob("part-*.parquet")))
    keep = sorted(set(table["article_id"].to_pylist()))[:n]
    rows = table.filter(pc.is_in(table["article_id"], pa.array(keep))).sort_by("id")
    out.mkdir(parents=True)
    half = rows.num_rows // 2
    pq.write_table(rows.slice(0, half), out / "part-00000-of-00002.parquet")
    pq.write_table(rows.slice(half), out / "part-00001-of-00002.parquet")
    return [str(out)]


@pytest.fixture(scope="module")
def propagated(ingested, student, cluster) -> dict:
    from pipelines.propagate import run_propagate

    root = ingested["root"]
    paragraphs = first_articles(root / "direct" / "paragraphs", root / "to-score", N_SCORED)
    direct = run_propagate(paragraphs, str(student), str(root / "direct"))
    with distributed.get_task_stream(cluster["client"]) as stream:
        # more bundles than workers: the model must still load once per process, not per bundle
        dask = run_propagate(
            paragraphs, str(student), str(root / "dask"), beam_args=on_dask(cluster, "--dask_npartitions=4")
        )
    return {"root": root, "direct": direct, "dask": dask, "stream": stream.data}


def test_propagate_on_dask_equals_direct(propagated):
    root = propagated["root"]
    direct, dask = rows(root / "direct" / "scored"), rows(root / "dask" / "scored")
    assert [r["id"] for r in dask] == [r["id"] for r in direct] and len(dask) == propagated["direct"]["read"]
    floats = {"educational_score", "document_type_scores", "domain_scores"}  # batch shapes differ: fp noise
    for a, b in zip(dask, direct, strict=True):
        assert {k: a[k] for k in a.keys() - floats} == {k: b[k] for k in b.keys() - floats}
        for k in floats & set(a):
            assert a[k] == pytest.approx(b[k], abs=1e-4)
    stats = propagated["dask"]
    assert stats["complete"] and stats["dead_lettered"] == 0 and stats["runner"].endswith("DaskRunner")
    assert stats["counters"]["paragraphs_scored"] == len(dask)  # Beam metrics came back from the workers


def test_propagate_spreads_over_both_workers_with_one_model_each(propagated):
    stream = propagated["stream"]
    scoring = [t for t in stream if "RunInference" in str(t["key"])]
    bundles = {str(t["key"]) for t in scoring}
    assert len(workers_that_ran(scoring, "")) == 2 and len(bundles) > 2
    assert 1 <= propagated["dask"]["counters"]["model_loads"] <= 2  # per process, not per bundle


@pytest.fixture(scope="module")
def subsets(propagated, cluster) -> dict:
    from pipelines.subsets.pipeline import run_subsets

    root = propagated["root"]
    out = {}
    for name, args in (("direct", None), ("dask", on_dask(cluster))):
        out[name] = run_subsets(
            [str(root / "direct" / "scored")], "paper", str(root / f"subsets-{name}"), beam_args=args
        )
    return {"root": root, **out}


def test_subsets_on_dask_equal_direct(subsets):
    from pipelines.subsets.pipeline import read_documents

    root = subsets["root"]
    assert set(subsets["dask"]["subsets"]) == set(subsets["direct"]["subsets"]) and subsets["dask"]["subsets"]
    for name, entry in subsets["direct"]["subsets"].items():
        other = subsets["dask"]["subsets"][name]
        assert other["files"] == entry["files"]
        assert {k: v for k, v in other.items() if "second" not in k} == {
            k: v for k, v in entry.items() if "second" not in k
        }
        direct = read_documents(str(root / "subsets-direct"), name)
        dask = read_documents(str(root / "subsets-dask"), name)
        assert dask == direct  # same documents, same shard files, same seeded order within each
    assert subsets["dask"]["subsets"]["BE-All"]["articles_read"] == N_SCORED


@pytest.fixture(scope="module")
def label_rows(teacher_labels: Path, tmp_path_factory):
    from annotate_helpers import paragraph_rows, write_paragraphs

    root = tmp_path_factory.mktemp("annotate")
    return root, write_paragraphs(paragraph_rows(teacher_labels, limit=120), root / "in", shards=2)


def labels_and_dead(out: Path) -> tuple[list[dict], list[str]]:
    return rows(out / "labels", ["id", "document_type", "domain", "educational_score"]), dead_letters(
        out, "annotate"
    )


def test_annotate_replay_on_dask_equals_direct(label_rows, cluster):
    from annotators.annotate import run_annotate

    root, paragraphs = label_rows
    kw = {"sample": 60, "seed": 3, "use_beam": True}
    direct = run_annotate([str(paragraphs)], str(root / "replay-direct"), **kw)
    dask = run_annotate([str(paragraphs)], str(root / "replay-dask"), beam_args=on_dask(cluster), **kw)
    assert dask["written"] == direct["written"] > 0 and dask["read"] == 60
    assert labels_and_dead(root / "replay-dask") == labels_and_dead(root / "replay-direct")


def test_annotate_openai_on_dask_equals_direct(label_rows, cluster, teacher_labels, monkeypatch):
    from fake_openai import FakeConfig, FakeOpenAI

    from annotators.annotate import run_annotate

    monkeypatch.setenv("OPENAI_API_KEY", "sk-dask-test-key")
    root, paragraphs = label_rows
    out = {}
    with FakeOpenAI(FakeConfig(faults={"rate_limit": 0.1}, retry_after_s=0.01), str(teacher_labels)) as fake:
        for name, args in (("direct", None), ("dask", on_dask(cluster))):
            out[name] = run_annotate(
                [str(paragraphs)],
                str(root / f"openai-{name}"),
                sample=40,
                seed=4,
                teacher="openai",
                base_url=fake.base_url,
                model="gpt-4o-mini",
                use_beam=True,
                beam_args=args,
                progress=False,
            )
        assert sum(fake.faults_sent.values()) > 0  # the workers retried rate-limited calls
    assert out["dask"]["written"] == out["direct"]["written"] > 0
    assert labels_and_dead(root / "openai-dask") == labels_and_dead(root / "openai-direct")
    ledger = out["dask"]["ledger"]  # counted on the workers, gathered through Beam metrics
    assert ledger["calls"] >= out["dask"]["written"] and ledger["input_tokens"] > 0


def test_a_cluster_is_started_for_the_pipeline_when_no_address_is_given(pmc_sample, tmp_path):
    from pipelines.ingest.pipeline import run_ingest

    inputs = [str(pmc_sample / a) for a in ("PMC12061466.xml", "PMC13261293.xml")]
    before = children()
    run_ingest(inputs, str(tmp_path / "dask"), beam_args=["--runner=dask", "--dask_workers=2"])
    assert not children() - before, "the pipeline's local cluster outlived it"
    run_ingest(inputs, str(tmp_path / "direct"))
    assert rows(tmp_path / "dask" / "paragraphs") == rows(tmp_path / "direct" / "paragraphs")


@pytest.mark.slow  # ~3 min: the whole run twice; every stage on Dask is covered one by one above
def test_run_config_on_dask_equals_direct(cluster, tmp_path):
    """`biomed-enrich run --config` with `beam_args: [--runner=dask, --dask_address=...]`."""
    import shutil

    import yaml

    from pipelines.app.orchestrate import load_config, run

    demo = Path(__file__).resolve().parents[1] / "demo"
    (tmp_path / "articles").mkdir()
    for name in ("PMC6092541.xml", "PMC8160441.xml", "PMC12061466.xml"):
        shutil.copyfile(demo / "articles" / name, tmp_path / "articles" / name)
    config = yaml.safe_load((demo / "config.yaml").read_text())
    config["inputs"] = [str(tmp_path / "articles")]
    config["train"].update(extra_labels_sample=50, head_epochs=60, cache_dir=str(tmp_path / "cache"))
    outputs = {}
    for name, beam_args in (("direct", []), ("dask", on_dask(cluster))):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**config, "output": str(tmp_path / name), "beam_args": beam_args}))
        state = run(load_config(path), quiet=True)
        assert {s["status"] for s in state["stages"].values()} == {"done"}, state
        outputs[name] = tmp_path / name
    direct, dask = outputs["direct"], outputs["dask"]
    assert rows(dask / "ingest" / "paragraphs") == rows(direct / "ingest" / "paragraphs")
    assert labels_and_dead(dask / "annotate") == labels_and_dead(direct / "annotate")
    scored = rows(dask / "propagate" / "scored", ["id", "document_type", "domain"])
    assert scored == rows(direct / "propagate" / "scored", ["id", "document_type", "domain"]) and scored
    from pipelines.subsets.pipeline import read_documents

    for recipe in ("BE-Base", "BE-ClinicalCase"):
        documents = read_documents(str(dask / "subsets"), recipe)
        assert documents == read_documents(str(direct / "subsets"), recipe)
