"""One direction of dependency: core <- stages <- app, computed from the source with ast.

Layers: `pipelines.core` (schemas, IO, options, dead letters, stats) imports no stage; the stages
(`pipelines.ingest`, `pipelines.subsets`, `pipelines.propagate`, `annotators`, `distill`) import the
core and no other stage, except the edges listed in STAGE_EDGES; `pipelines.app` (CLI, run, report,
loop) imports anything. No module cycles, no private name imported from another package. The core and
the ingest stage import without torch, transformers or openai (an ingest-only worker carries none).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "annotators", "distill")
STAGES = ("pipelines.ingest", "pipelines.subsets", "pipelines.propagate", "annotators", "distill")
# Allowed stage -> stage imports: propagate scores with the student's public inference API.
STAGE_EDGES = {("pipelines.propagate", "distill")}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, str | None]]:
    """(imported module, imported name or None) for every import anywhere in the module (lazy ones too)."""
    found = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((full, None) if full in known else (base, alias.name))
    return [(m, n) for m, n in found if m.split(".")[0] in PACKAGES]


def resolve(module: str, known: dict[str, Path]) -> str:
    while module not in known and "." in module:
        module = module.rpartition(".")[0]
    return module


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for name, path in known.items():
        for target, _ in imports(name, path, known):
            target = resolve(target, known)
            if target != name and target in known:
                graph[name].add(target)
    return graph


def layer(module: str) -> str:
    if module == "pipelines.core" or module.startswith("pipelines.core."):
        return "core"
    if module.startswith("pipelines.app"):
        return "app"
    for stage in STAGES:
        if module == stage or module.startswith(stage + "."):
            return stage
    return "package"  # the bare `pipelines` namespace package


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def forbidden(source: str, target: str) -> bool:
    """An upward or sideways edge between layers."""
    a, b = layer(source), layer(target)
    if a == b or b == "core" or a == "app":
        return False
    if a == "core":
        return True  # the core imports no stage and no app
    if b == "app":
        return True  # a stage never imports the app
    return (a, b) not in STAGE_EDGES


def test_layers_are_assigned_to_every_module():
    unassigned = [m for m in modules() if layer(m) == "package" and m != "pipelines"]
    assert not unassigned, f"modules outside core / a stage / app: {unassigned}"


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_upward_or_sideways_imports():
    graph = import_graph()
    bad = sorted((a, b) for a, targets in graph.items() for b in targets if forbidden(a, b))
    assert bad == []


def test_no_private_names_across_packages():
    known = modules()
    bad = []
    for name, path in known.items():
        for target, imported in imports(name, path, known):
            owner = resolve(target, known).rpartition(".")[0]
            here = name.rpartition(".")[0] if path.name != "__init__.py" else name
            if imported and imported.startswith("_") and owner != here:
                bad.append(f"{name}: from {target} import {imported}")
    assert bad == []


def test_the_checks_see_a_forbidden_edge():
    """The rules flag what they are meant to (so an empty result above means something)."""
    assert forbidden("pipelines.core.io", "pipelines.subsets.pipeline")
    assert forbidden("pipelines.core.io", "distill.model")
    assert forbidden("annotators.annotate", "pipelines.app.orchestrate")
    assert forbidden("pipelines.subsets.tokens", "distill.model")
    assert not forbidden("pipelines.propagate", "distill.inference")
    assert not forbidden("pipelines.app.orchestrate", "annotators.annotate")
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


BLOCKER = textwrap.dedent(
    """
    import importlib, pkgutil, sys

    BLOCKED = {"torch", "transformers", "openai"}

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked: {name}")

    sys.meta_path.insert(0, Block())
    for package in sys.argv[1:]:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            if info.name != "pipelines.core.dask_runner":  # the [dask] extra, imported on --runner=dask
                importlib.import_module(info.name)
    print("ok", sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
    """
)


@pytest.mark.parametrize("packages", [["pipelines.core", "pipelines.ingest"], ["pipelines.subsets"]])
def test_core_and_ingest_import_without_torch_transformers_openai(packages):
    run = subprocess.run(
        [sys.executable, "-c", BLOCKER, *packages], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "ok []"


def test_a_stage_needing_an_extra_says_which():
    """With torch absent, the train check fails with one line naming the `[train]` extra."""
    probe = BLOCKER.split("for package in")[0] + textwrap.dedent(
        """
        from pipelines.core.extras import MissingExtra, require

        try:
            require("train", "the train stage")
        except MissingExtra as e:
            print(e)
        """
    )
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (
        run.stdout.strip() == "the train stage needs torch, transformers: pip install 'biomed-enrich[train]'"
    )
