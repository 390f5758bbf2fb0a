"""The run's stages and where each writes under the run's output root.

Its own module so that the orchestrator (which writes the run) and the report (which reads it back)
share it without importing each other.
"""

from __future__ import annotations

STAGES = ("ingest", "annotate", "train", "propagate", "subsets", "report")
# Where each data stage writes under the run's output root (the report reads them back from here).
STAGE_DIRS = {
    "ingest": "ingest",
    "annotate": "annotate",
    "train": "model",
    "propagate": "propagate",
    "subsets": "subsets",
}
