"""Optional dependency groups (`pip install 'biomed-enrich[<extra>]'`), checked where a stage is built.

The core and the ingest stage need none of them, so an ingest-only worker image carries no torch; a
stage that needs one fails at once with a one-line error naming the extra, not deep inside a worker.
"""

from __future__ import annotations

import importlib.util

# extra -> the modules it provides (the names pyproject's optional-dependencies install)
EXTRAS = {
    "teacher": ("openai",),
    "train": ("torch", "transformers", "sklearn"),
    "report": ("matplotlib",),
    "int8": ("openvino", "nncf"),
    "dask": ("dask", "distributed"),
}


class MissingExtra(ImportError):
    """A stage was asked for whose optional dependencies are not installed."""


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # an import hook refusing it (a worker image built without the extra)
        return False


def missing(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if not installed(m)]


def require(extra: str, what: str) -> None:
    """Raise MissingExtra (one line: what needs it, which modules, the install command) when absent."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(f"{what} needs {', '.join(absent)}: pip install 'biomed-enrich[{extra}]'")
