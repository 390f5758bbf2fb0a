"""Input expansion: folders, globs, tar.gz packages streamed, PMC file lists, the PMC Cloud layout."""

from __future__ import annotations

import json

from ingest_fixtures import FILELIST_HEADER, make_package

from pipelines.ingest import sources


def test_tar_members_are_streamed_without_unpacking(pmc_sample, tmp_path):
    names = ["PMC4735918.xml", "PMC2852030.xml", "PMC10167360.xml"]
    package = make_package(pmc_sample, tmp_path, names, {"PMC000xxxxxx/readme.txt": b"not an article"})
    before = sorted(p.name for p in tmp_path.rglob("*"))
    members = list(sources.iter_tar(str(package)))
    assert [m for m, _, _ in members] == [f"PMC000xxxxxx/{n}" for n in names]
    assert members[0][1] == (pmc_sample / names[0]).read_bytes()
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written to disk
    tasks = list(sources.expand_input(str(package)))
    assert [(t.kind, t.filelists) for t in tasks] == [("tar", [])]


def test_package_filelist_is_found_and_parsed(pmc_sample, tmp_path):
    package = make_package(pmc_sample, tmp_path, ["PMC2852030.xml"])
    filelist = tmp_path / "oa_comm_xml.PMC000xxxxxx.baseline.2026-01-01.filelist.csv"
    filelist.write_text(
        FILELIST_HEADER
        + 'PMC000xxxxxx/PMC2852030.xml,"Abdom Imaging. 2010",PMC2852030,"2024-02-07",18987909,"CC BY-NC",no\n'
        + 'PMC000xxxxxx/PMC4735918.xml,"Case Rep Urol. 2016",PMC4735918,"2024-02-07",26881177,"CC BY",yes\n'
    )
    [task] = list(sources.expand_input(str(package)))
    assert task.filelists == [str(filelist)]
    table = sources.parse_filelist(filelist.read_bytes(), str(filelist))
    assert table["PMC2852030"].license == "CC BY-NC" and table["PMC2852030"].pmid == "18987909"
    assert table["PMC4735918"].retracted is True and table["PMC2852030"].retracted is False
    assert table["PMC4735918.xml"] is table["PMC4735918"]  # also keyed by the member's file name
    assert sources.filelist_inputs([str(filelist), str(package)]) == [str(filelist)]


def test_folders_and_globs_expand_to_article_files(pmc_sample, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "one.nxml").write_bytes((pmc_sample / "PMC4735918.xml").read_bytes())
    (tmp_path / "two.xml").write_bytes((pmc_sample / "PMC2852030.xml").read_bytes())
    (tmp_path / "notes.txt").write_text("ignored")
    found = sorted(t.uri for t in sources.expand_input(str(tmp_path)))
    assert found == [str(tmp_path / "a" / "b" / "one.nxml"), str(tmp_path / "two.xml")]
    assert [t.uri for t in sources.expand_input(str(tmp_path / "*.xml"))] == [str(tmp_path / "two.xml")]
    assert list(sources.expand_input(str(tmp_path / "nothing-*.xml"))) == []


def test_cloud_layout_metadata_json(pmc_sample, tmp_path):
    folder = tmp_path / "PMC2852030.1"
    folder.mkdir()
    (folder / "PMC2852030.1.xml").write_bytes((pmc_sample / "PMC2852030.xml").read_bytes())
    (tmp_path / "metadata").mkdir()
    meta = {
        "pmcid": "PMC2852030",
        "version": 1,
        "pmid": 18987909,
        "license_code": "CC BY",
        "is_retracted": True,
    }
    (tmp_path / "metadata" / "PMC2852030.1.json").write_text(json.dumps(meta))
    [task] = list(sources.expand_input(str(tmp_path)))
    assert task.uri.endswith("PMC2852030.1/PMC2852030.1.xml")
    assert task.metadata_uri == str(tmp_path / "metadata" / "PMC2852030.1.json")
    parsed = sources.parse_cloud_metadata(sources.read_bytes(task.metadata_uri))
    assert (parsed.pmcid, parsed.pmid, parsed.license, parsed.retracted) == (
        "PMC2852030",
        "18987909",
        "CC BY",
        True,
    )
    assert sources.cloud_metadata_uri(str(tmp_path / "PMC2852030.xml")) is None  # not the cloud layout


def test_sources_are_named_relative_to_the_input_as_given(pmc_sample, tmp_path):
    """Rows must not carry the machine's directories (an output can be moved): issue 18 point 7."""
    folder = tmp_path / "oa"
    (folder / "PMC000xxxxxx").mkdir(parents=True)
    (folder / "PMC000xxxxxx" / "PMC4735918.xml").write_bytes((pmc_sample / "PMC4735918.xml").read_bytes())
    assert [t.source for t in sources.expand_input(str(folder))] == ["oa/PMC000xxxxxx/PMC4735918.xml"]
    assert [t.source for t in sources.expand_input(f"{folder}/*/*.xml")] == ["oa/PMC000xxxxxx/PMC4735918.xml"]
    assert [t.source for t in sources.expand_input(str(folder / "PMC000xxxxxx" / "PMC4735918.xml"))] == [
        "PMC4735918.xml"
    ]
    [task] = sources.expand_input(str(folder))
    assert task.uri == str(folder / "PMC000xxxxxx" / "PMC4735918.xml") and task.updated  # read from here
    assert sources.display_source("in", "in/PMC1.xml") == "in/PMC1.xml"  # relative: as given
    assert sources.display_source("gs://b/oa/", "gs://b/oa/PMC1.xml") == "gs://b/oa/PMC1.xml"
