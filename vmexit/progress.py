"""What a grid of runs (grid.py) shows while it runs: on a terminal a rich progress bar with the runs
done, failed and remaining and an estimate of the time left; otherwise (a log, a pipe, CI) one plain
line per finished run on stderr. Host time paces and estimates the display only: no result sees it.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from .grid import FAILED, Outcome


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 1:
        return "less than a second"
    if seconds < 60:
        return f"about {seconds} s"
    if seconds < 3600:
        return f"about {seconds // 60} min {seconds % 60:02d} s"
    return f"about {seconds // 3600} h {seconds % 3600 // 60:02d} min"


class GridProgress:
    """on_done(outcome) after every run; close() at the end. mode: "bar", "lines" or "off"."""

    def __init__(self, labels: list[str], mode: str, stream: TextIO | None = None):
        self.labels, self.mode = labels, mode
        self.stream = stream or sys.stderr
        self.done = self.failed = 0
        self.t0 = time.monotonic()
        self._bar = None
        if mode == "bar":
            self._start_bar()

    @classmethod
    def choose(cls, labels: list[str], enabled: bool) -> "GridProgress":
        """A bar on a terminal, plain lines otherwise, nothing when not enabled (--no-progress)."""
        mode = "off" if not enabled else "bar" if sys.stderr.isatty() else "lines"
        return cls(labels, mode)

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)
        self._bar = Progress(TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[failed]} failed, {task.fields[left]} left"),
                             TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                             TextColumn("{task.description}"), console=Console(file=self.stream), transient=True)
        self._task = self._bar.add_task("", total=len(self.labels), failed=0, left=len(self.labels))
        self._bar.start()

    def estimate(self) -> float | None:
        """Seconds left at the rate so far (None before the first run ends)."""
        if not self.done:
            return None
        return (time.monotonic() - self.t0) / self.done * (len(self.labels) - self.done)

    def __call__(self, outcome: Outcome) -> None:
        self.done += 1
        self.failed += outcome.status in FAILED
        left = len(self.labels) - self.done
        label = self.labels[outcome.index]
        if self._bar is not None:
            self._bar.update(self._task, advance=1, failed=self.failed, left=left, description=label)
        elif self.mode == "lines":
            eta = self.estimate()
            tail = f", {_duration(eta)} to go" if left and eta is not None else ""
            what = outcome.status + (f" ({outcome.error})" if outcome.error else "")
            print(f"vmexit: run {self.done}/{len(self.labels)} {label}: {what}; {self.failed} failed, "
                  f"{left} left{tail}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
