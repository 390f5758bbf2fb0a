"""Lint and cross-check the container and cluster files (no docker engine here: hadolint, shellcheck, YAML).

The checks tie the infra files to the code: the worker image's Beam/Python/torch versions to the installed
SDK and pyproject pins, its install step to the one CI runs, the Flex Template parameters to the entry
point, the Flink job server to a Flink version Beam 2.77 publishes.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import apache_beam
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DATAFLOW = ROOT / "infra" / "dataflow"
FLINK = ROOT / "infra" / "flink"
DOCKERFILE = DATAFLOW / "Dockerfile"
SHELL_SCRIPTS = [DATAFLOW / "build.sh", DATAFLOW / "launch.sh", FLINK / "launch.sh"]


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.rstrip("\\").strip() if current else stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            word, _, rest = current.partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


def pin(name: str) -> str:
    """The `==` pin of a runtime dependency in pyproject.toml, in the base list or an optional group such
    as `[train]` (no tomllib: Python 3.10 is supported)."""
    text = (ROOT / "pyproject.toml").read_text()
    deps = re.search(r"^dependencies = \[(.*?)^\[project\.scripts\]", text, re.S | re.M)
    m = re.search(rf'"{re.escape(name)}==([\w.]+)"', deps.group(1))
    assert m, f"{name} is not pinned with == in pyproject.toml"
    return m.group(1)


def ci_install_command() -> str:
    for line in (ROOT / ".ci" / "run").read_text().splitlines():
        m = re.match(r"\s*(pip install [^&]+?)\s*(&&|$)", line)
        if m:
            return m.group(1)
    raise AssertionError("no `pip install` step in .ci/run")


def tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(path).exists(), f"{name} missing: it comes with `pip install -e '.[test]'`"
    return path


def test_hadolint_passes_on_the_worker_dockerfile():
    result = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_scripts_pass_shellcheck_and_are_executable(script: Path):
    result = subprocess.run([tool("shellcheck"), str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert script.stat().st_mode & 0o111, f"{script} is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in script.read_text()


def test_base_images_are_pinned_and_match_the_installed_beam_and_python():
    froms = [args for word, args in instructions(DOCKERFILE) if word == "FROM"]
    assert froms, "no FROM"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert froms[-1] == f"apache/beam_python{py}_sdk:{apache_beam.__version__}"
    assert apache_beam.__version__ == pin("apache-beam")
    args = {a.split("=")[0]: a for word, a in instructions(DOCKERFILE) if word == "ARG"}
    for image in froms:
        ref = image.split()[0]
        assert "latest" not in ref
        if ref.startswith("${"):  # an ARG: it must have no floating default; build.sh pins it by digest
            name = ref.strip("${}")
            assert "=" not in args[name], f"ARG {name} must not default to a floating tag"
            assert "@${digest}" in (DATAFLOW / "build.sh").read_text()
        else:
            assert re.search(r":[\w.-]+$|@sha256:[0-9a-f]{64}$", ref), f"unpinned base image {ref}"


def test_install_steps_are_the_ones_ci_runs():
    ci = ci_install_command()
    assert ci == "pip install -e '.[test]'"  # what the README tells users to run too
    runs = [args for word, args in instructions(DOCKERFILE) if word == "RUN"]
    assert any(run == ci or run.startswith(ci + " && ") for run in runs), (ci, runs)
    assert ci in (ROOT / "README.md").read_text()
    # torch: the same pin as pyproject (so the package install keeps the CUDA build installed before it)
    torch_runs = [run for run in runs if "torch==" in run]
    assert torch_runs and all(f"torch=={pin('torch')}" in run for run in torch_runs)


def test_copied_sources_exist_and_pass_the_dockerignore_allow_list():
    allowed = [
        line[1:].rstrip("/")
        for line in (DATAFLOW / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    copies = [args for word, args in instructions(DOCKERFILE) if word == "COPY" and "--from" not in args]
    assert copies
    for args in copies:
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (ROOT / source).exists(), f"COPY source {source} missing"
            assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), source
    # every top-level package pyproject installs is copied into the image
    include = re.search(r"^include = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    copied = {shlex.split(a)[0] for a in copies}
    assert {p.strip(' "*') for p in include.split(",")} <= copied
    # and everything the build reads: setup.py compiles the ingest module, which the image then requires
    assert {"pyproject.toml", "setup.py"} <= {s for a in copies for s in shlex.split(a)[:-1]}
    assert any("jats.COMPILED" in args for word, args in instructions(DOCKERFILE) if word == "RUN")


def test_entrypoint_and_flex_launcher_are_wired():
    words = instructions(DOCKERFILE)
    assert words[-1] == ("ENTRYPOINT", '["/opt/apache/beam/boot"]')
    env = " ".join(args for word, args in words if word == "ENV")
    py_file = re.search(r"FLEX_TEMPLATE_PYTHON_PY_FILE=(\S+)", env).group(1)
    copied = {shlex.split(a)[-1]: shlex.split(a)[0] for w, a in words if w == "COPY" and "--from" not in a}
    assert (ROOT / copied[py_file]).is_file()
    assert any("python_template_launcher" in a for w, a in words if w == "COPY" and "--from" in a)


def test_flex_template_metadata_declares_every_stage_parameter():
    sys.path.insert(0, str(DATAFLOW))
    try:
        import flex_main
    finally:
        sys.path.remove(str(DATAFLOW))
    meta = json.loads((DATAFLOW / "metadata.json").read_text())
    declared = {p["name"]: p for p in meta["parameters"]}
    wanted = {"stage"} | {n for s in flex_main.STAGES.values() for n in (*s.list_params, *s.params)}
    assert set(declared) == wanted
    assert not declared["stage"]["isOptional"] and not declared["output"]["isOptional"]
    for stage in flex_main.STAGES:
        assert re.fullmatch(declared["stage"]["regexes"][0], stage)
    for p in meta["parameters"]:
        assert p["label"] and p["helpText"]
        for rx in p.get("regexes", []):
            re.compile(rx)


def test_cloudbuild_builds_the_same_dockerfile():
    build = yaml.safe_load((DATAFLOW / "cloudbuild.yaml").read_text())
    args = build["steps"][0]["args"]
    assert "--file=infra/dataflow/Dockerfile" in args
    build_args = {a.split("=", 1)[1].split("=")[0] for a in args if a.startswith("--build-arg=")}
    dockerfile_args = {a.split("=")[0] for w, a in instructions(DOCKERFILE) if w == "ARG"}
    assert build_args == dockerfile_args
    assert build["images"] == ["${_IMAGE}"]


def compose() -> dict:
    return yaml.safe_load((FLINK / "docker-compose.yml").read_text())


def test_compose_services_images_and_ports():
    services = compose()["services"]
    assert set(services) == {"jobmanager", "taskmanager", "job-server", "python-harness"}
    for name, svc in services.items():
        image = svc["image"]
        assert ":" in image.split("/")[-1] and "latest" not in image, f"{name}: unpinned {image}"
    published = {p.split(":")[0] for s in services.values() for p in s.get("ports", [])}
    assert {"8081", "8099", "8098"} <= published


def test_compose_job_server_matches_beam_and_flink_versions():
    from apache_beam.options.pipeline_options import FlinkRunnerOptions

    services = compose()["services"]
    m = re.fullmatch(r"apache/beam_flink([\d.]+)_job_server:([\d.]+)", services["job-server"]["image"])
    flink_minor, beam_version = m.groups()
    assert beam_version == apache_beam.__version__
    assert flink_minor in FlinkRunnerOptions.PUBLISHED_FLINK_VERSIONS
    for name in ("jobmanager", "taskmanager"):
        assert services[name]["image"].startswith(f"flink:{flink_minor}.")
    assert "--flink-master=jobmanager:8081" in services["job-server"]["command"]


def test_compose_harness_is_a_worker_pool_reachable_from_the_taskmanager():
    services = compose()["services"]
    harness = services["python-harness"]
    assert harness["command"] == ["--worker_pool"]
    assert harness["network_mode"] == "service:taskmanager"  # localhost:50000 from the taskmanager
    assert "WORKER_POOL:-localhost:50000" in (FLINK / "launch.sh").read_text()
    artifacts = "/tmp/beam-artifact-staging"
    assert f"--artifacts-dir={artifacts}" in services["job-server"]["command"]
    for name in ("job-server", "taskmanager"):
        assert any(v.endswith(":" + artifacts) for v in services[name]["volumes"])
    data = "${BIOMED_DATA:-/tmp/biomed}"
    for name in ("job-server", "taskmanager", "python-harness"):
        assert f"{data}:{data}" in services[name]["volumes"], f"{name}: data must mount at the same path"
    gpu = yaml.safe_load((FLINK / "docker-compose.gpu.yml").read_text())
    assert gpu["services"]["python-harness"]["deploy"]["resources"]["reservations"]["devices"]


def test_cost_estimate_uses_every_measured_benchmark(monkeypatch):
    monkeypatch.syspath_prepend(str(DATAFLOW))
    import cost_estimate

    text = cost_estimate.table()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    results = ROOT / "benchmarks" / "results"
    expected = {"ingest": ["ingest"], "propagate": ["propagate (CPU only)", "propagate (L4)"]}
    for name, stages in expected.items():
        for stage in stages:
            if (results / f"{name}.json").exists():
                assert "missing" not in rows[stage] and re.search(r"\$[\d,]+\.\d\d \|$", rows[stage]), rows
    assert any(stage.startswith("subsets") for stage in rows)
    if (results / "ingest.json").exists():  # the core-hours follow the measured rate
        ingest = json.loads((results / "ingest.json").read_text())
        rate = ingest.get("ours_with_write_per_s") or ingest["ours_per_s"]
        hours = cost_estimate.ARTICLES / rate / 3600 * cost_estimate.OVERHEAD
        assert f"{hours:.1f} core-h" in rows["ingest"]
