"""A run killed with `kill -9` and restarted spends no call on anything it had already been answered."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from annotate_helpers import paragraph_rows, write_paragraphs
from fake_openai import FakeConfig, FakeOpenAI

from annotators.annotate import run_annotate
from annotators.cache import AnswerCache, cache_key, text_sha256
from annotators.prompts import PROMPT_VERSION
from pipelines.core.io import read_table

SCRIPT = textwrap.dedent(
    """
    import sys
    from annotators.annotate import run_annotate
    run_annotate([sys.argv[1]], sys.argv[2], teacher="openai", base_url=sys.argv[3], model="fake-teacher",
                 fraction=1.0, concurrency=2, progress=False)
    """
)


def test_kill_9_and_restart_makes_no_repeated_calls(teacher_labels, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-resume-test-key")
    rows = paragraph_rows(teacher_labels, limit=60)
    paragraphs = write_paragraphs(rows, tmp_path / "in")
    out = tmp_path / "out"
    with FakeOpenAI(FakeConfig(latency_s=0.05), str(teacher_labels)) as fake:
        proc = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(paragraphs), str(out), fake.base_url],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while sum(fake.answered.values()) < 20 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        killed_at = dict(fake.attempts)

        cache = AnswerCache(str(out / "annotate_cache.sqlite"))
        keys = {text_sha256(r["text"]): cache_key("fake-teacher", PROMPT_VERSION, r["text"]) for r in rows}
        cached = {sha for sha, key in keys.items() if key in cache.get_many(keys.values())}
        cache.close()
        # killed mid-run with answers safely on disk (how many of the 20 answered are written yet
        # depends on the machine's load)
        assert 0 < len(cached) < len(rows)

        stats = run_annotate(
            [str(paragraphs)],
            str(out),
            teacher="openai",
            base_url=fake.base_url,
            model="fake-teacher",
            fraction=1.0,
        )
        new_calls = {
            sha: n - killed_at.get(sha, 0) for sha, n in fake.attempts.items() if n > killed_at.get(sha, 0)
        }
        assert not set(new_calls) & cached  # nothing answered before the kill was asked again
        assert sum(new_calls.values()) == len(rows) - len(cached)
        assert stats["written"] == len(rows) and stats["ledger"]["cache_hits"] == len(cached)
        assert sorted(read_table([str(out / "labels")])["id"].to_pylist()) == sorted(r["id"] for r in rows)

        before = fake.requests
        run_annotate(
            [str(paragraphs)],
            str(out),
            teacher="openai",
            base_url=fake.base_url,
            model="fake-teacher",
            fraction=1.0,
        )
        assert fake.requests == before  # a finished run costs nothing to redo
