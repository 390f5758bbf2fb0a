"""One console layer for every command: log lines, progress bars, interrupts and the stage summary line.

Progress bars are tqdm's (the stages draw them); log records and our own lines go through
`tqdm.write` (tqdm's logging redirect), so a line never lands in the middle of a bar. `-q` sets
`TQDM_DISABLE` so the bars go too. SIGINT/SIGTERM set a flag before unwinding: Beam's DirectRunner
wraps a KeyboardInterrupt raised inside a pipeline in a RuntimeError, and the flag is how the
orchestrator and the commands still recognise it as an interrupt (never retried, exit 130/143).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

# Log lines that say nothing to a user of this tool (optional cloud clients Beam probes at import).
NOISE = (
    "apitools not found",
    "bigquery client libraries are not",
    "Make sure that generated modules",
    "No module named 'google.cloud",
)
_state: dict = {"signal": None}


class Interrupted(Exception):
    """The run was stopped by SIGINT/SIGTERM; `exit_code` is 128 + the signal number (130/143)."""

    def __init__(self, signum: int, where: str = ""):
        self.signum, self.where = signum, where
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"interrupted ({name}){' during ' + where if where else ''}")


def write(line: str) -> None:
    """A line on stderr that does not collide with a live progress bar."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)
    sys.stderr.flush()


class _BarSafeHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            write(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _NoiseFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is not ours to judge
            return True
        return not any(n in message for n in NOISE)


def _disabled(init):
    @functools.wraps(init)
    def quiet_init(self, *args, **kwargs):
        kwargs["disable"] = True  # even where a stage passes disable=not progress
        init(self, *args, **kwargs)

    return quiet_init


@contextlib.contextmanager
def session(quiet: bool = False) -> Iterator[None]:
    """`setup` for the length of one command, then the logging and bar settings as they were."""
    from tqdm import std

    root = logging.getLogger()
    saved = (list(root.handlers), root.level, os.environ.get("TQDM_DISABLE"), std.tqdm.__init__)
    setup(quiet)
    if quiet:  # tqdm reads TQDM_DISABLE once, at import: silence the bars of this process directly
        std.tqdm.__init__ = _disabled(saved[3])
    try:
        yield
    finally:
        std.tqdm.__init__ = saved[3]
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        if saved[2] is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = saved[2]


def setup(quiet: bool = False, level: int = logging.WARNING) -> None:
    """Route logging through the bar-safe handler (`level: message`), drop known noise; `quiet` hides bars."""
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"  # for worker processes started from here
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _BarSafeHandler):
            root.removeHandler(handler)
    handler = _BarSafeHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.addFilter(_NoiseFilter())
    root.addHandler(handler)
    root.setLevel(logging.ERROR if quiet else level)
    import warnings

    warnings.filterwarnings("ignore", message=".*apitools.*")
    # "kappa undefined on a tiny held-out set": the report shows the NaN where it matters
    warnings.filterwarnings("ignore", module="sklearn")


def close_bars() -> None:
    """Close every progress bar a finished stage left open (else it redraws later, under other lines)."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", [])):
        with contextlib.suppress(Exception):
            bar.close()


def interrupted() -> int | None:
    """The signal number that asked us to stop, if any."""
    return _state["signal"]


def raise_if_interrupted(error: BaseException | None = None, where: str = "") -> None:
    """Turn an interrupt (however a library wrapped it) into `Interrupted`; else do nothing."""
    signum = _state["signal"]
    if signum is None and isinstance(error, KeyboardInterrupt):
        signum = signal.SIGINT
    if signum is not None:
        raise Interrupted(signum, where) from None


def _handler(signum, frame) -> None:
    if _state["signal"] is not None:  # a second Ctrl-C: stop now, whatever is still unwinding
        os._exit(128 + signum)
    _state["signal"] = signum
    logging.disable(logging.CRITICAL)  # the libraries' tracebacks of the unwinding are not news
    raise KeyboardInterrupt


@contextlib.contextmanager
def catch_interrupts() -> Iterator[None]:
    """SIGINT/SIGTERM inside the block: remember the signal and unwind (restores handlers on exit)."""
    _state["signal"] = None
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def reset_interrupt() -> None:
    _state["signal"] = None
    logging.disable(logging.NOTSET)
