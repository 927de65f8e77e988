"""Progress of long loops (sampling steps, reconstruction iterations), reported without plumbing.

Loops call :func:`report` after each step; nothing happens unless a caller installed a reporter
for the current context (:func:`reporting`), e.g. the CLI's :func:`progress_bar`. A library user
who never asks for progress pays one context-variable lookup per step, and a loop traced by
``torch.compile`` reports nothing (the call vanishes from the graph), so no host syncs are added.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TextIO

import torch

Reporter = Callable[[int, int, str], None]  # (steps done, steps in this loop, what is running)
_REPORTER: ContextVar[Reporter | None] = ContextVar("polydiff_progress", default=None)


def report(done: int, total: int, what: str = "sampling") -> None:
    """Tell the installed reporter (if any) that ``done`` of ``total`` steps of ``what`` ran."""
    if torch.compiler.is_compiling():
        return
    reporter = _REPORTER.get()
    if reporter is not None:
        reporter(done, total, what)


@contextmanager
def reporting(reporter: Reporter) -> Iterator[None]:
    """Send every :func:`report` inside the block to ``reporter(done, total, what)``."""
    token = _REPORTER.set(reporter)
    try:
        yield
    finally:
        _REPORTER.reset(token)


@contextmanager
def progress_bar(
    stream: TextIO | None = None,
    *,
    delay: float = 2.0,
    refresh: float = 0.1,
    enabled: bool | None = None,
) -> Iterator[None]:
    """A console bar for the loops run inside the block, shown once work lasts ``delay`` seconds.

    Each loop (a sampling call, one block of a block sampler, one file) counts its own steps; the
    bar says which loop it shows (``pass k``). ``refresh``: the least seconds between redraws;
    ``enabled=None``: only on a terminal.
    """
    from tqdm.auto import tqdm

    stream = sys.stderr if stream is None else stream
    if enabled is None:
        enabled = stream.isatty()
    if not enabled:
        yield
        return
    state = {"bar": None, "passes": 0, "what": None}

    def update(done: int, total: int, what: str) -> None:
        bar = state["bar"]
        if bar is None:
            bar = state["bar"] = tqdm(total=total, desc=what, file=stream, unit="step",
                                      delay=delay, mininterval=refresh, leave=False,
                                      dynamic_ncols=True)  # fmt: skip
        elif done <= bar.n or total != bar.total or what != state["what"]:  # a new loop began
            state["passes"] += 1
            bar.reset(total=total)
            bar.set_description(f"{what} (pass {state['passes'] + 1})", refresh=False)
        state["what"] = what
        bar.update(done - bar.n)

    try:
        with reporting(update):
            yield
    finally:
        if state["bar"] is not None:
            state["bar"].close()


__all__ = ["Reporter", "progress_bar", "report", "reporting"]
