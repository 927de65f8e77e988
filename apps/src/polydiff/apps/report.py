"""The markdown report of `polydiff demo` (and of any verb that returns a StageResult)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from polydiff.apps.registry import StageResult


@dataclass
class Entry:
    """One domain in a report: its result, or the error that stopped it."""

    domain: str
    seconds: float | None
    result: StageResult | None = None
    error: str | None = None  # one-line summary; the traceback is in <domain>/error.txt

    @property
    def ok(self) -> bool:
        return self.error is None


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def render_report(report_file: Path, title: str, entries: list[Entry], preamble: str = "") -> str:
    """Markdown: a summary table of headline metrics, then one section per domain."""
    lines = [f"# {title}", ""]
    if preamble:
        lines += [preamble, ""]
    lines += ["| domain | status | time (s) | headline metrics |", "|---|---|---|---|"]
    for e in entries:
        status = "ok" if e.ok else "FAILED"
        head = "; ".join(f"{k} = {_cell(v)}" for k, v in e.result.headline.items()) if e.ok else ""
        secs = "-" if e.seconds is None else f"{e.seconds:.1f}"
        lines.append(f"| {e.domain} | {status} | {secs} | {head or _cell(e.error)} |")
    for e in entries:
        lines += ["", f"## {e.domain}", ""]
        if not e.ok:
            lines += [f"**FAILED**: `{e.error}` (traceback in `{e.domain}/error.txt`)"]
            continue
        if e.result.markdown:
            lines += [e.result.markdown.strip(), ""]
        for caption, plot in e.result.plots:
            link = Path(os.path.relpath(Path(plot).resolve(), report_file.parent.resolve()))
            lines += [f"![{caption}]({link.as_posix()})", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(report_file: Path, title: str, entries: list[Entry], preamble: str = "") -> None:
    from polydiff.core.io import atomic_write_text

    atomic_write_text(report_file, render_report(report_file, title, entries, preamble))
