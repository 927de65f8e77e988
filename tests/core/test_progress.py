"""Progress reporting: every sampling step reaches an installed reporter, nothing leaks out of
its block, a compiled loop stays one graph, and the console bar counts steps and passes."""

from __future__ import annotations

import io

import pytest
import torch

from polydiff.core import paths, sample
from polydiff.core.progress import progress_bar, report, reporting

PATH = paths.VPLinear()


def _net(x, t):
    return torch.tanh(x) * t[:, None] + 0.1 * x


def _sample(steps: int = 5):
    return sample(_net, torch.randn(3, 2), path=PATH, solver="ddim", steps=steps)


def test_every_step_of_a_sampling_loop_is_reported_in_order():
    seen = []
    with reporting(lambda done, total, what: seen.append((done, total, what))):
        _sample(steps=5)
    assert seen == [(k, 5, "sampling") for k in range(1, 6)]


def test_reports_go_only_to_the_reporter_of_the_enclosing_block():
    outer, inner = [], []
    with reporting(lambda *a: outer.append(a)):
        report(1, 2)
        with reporting(lambda *a: inner.append(a)):
            report(1, 3, "reconstruction")
        report(2, 2)
    report(9, 9)  # no reporter: nothing happens
    assert outer == [(1, 2, "sampling"), (2, 2, "sampling")]
    assert inner == [(1, 3, "reconstruction")]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_compiled_loop_under_a_reporter_stays_one_graph():
    seen = []

    def run(x):
        return sample(_net, x, path=PATH, solver="ddim", steps=4, grid="uniform", t_start=0.9,
                      t_end=0.05, noise=lambda like: torch.full_like(like, 0.3))  # fmt: skip

    torch._dynamo.reset()
    x = torch.randn(4, 2)
    with reporting(lambda *a: seen.append(a)):
        out = torch.compile(run, fullgraph=True, backend="eager")(x)
    torch.testing.assert_close(out, run(x), rtol=1e-5, atol=1e-6)
    assert seen == []  # the traced loop dropped the calls instead of breaking the graph


def test_the_console_bar_counts_steps_and_passes():
    stream = io.StringIO()
    with progress_bar(stream, delay=0, refresh=0, enabled=True):
        _sample(steps=4)
        _sample(steps=6)
    text = stream.getvalue()
    assert "sampling: 100%" in text and "4/4" in text
    assert "sampling (pass 2)" in text and "6/6" in text


def test_the_bar_stays_silent_off_a_terminal():
    stream = io.StringIO()  # not a tty
    with progress_bar(stream, delay=0):
        _sample(steps=3)
    assert stream.getvalue() == ""
