"""Showing a run's events, and parallel groups, to a person: a live display on a terminal,
plain lines otherwise."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import IO, Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from tead.engine.events import (
    BranchFinished,
    BranchRetry,
    Event,
    FanIn,
    FanOutStarted,
    NodeFinished,
    RunFinished,
    RunStarted,
)
from tead.parallel.config import ParallelFlowResult


def describe(event: Event) -> str | None:
    """One plain line for an event, or None for events not worth a line."""
    match event:
        case RunStarted():
            return f"run {event.workflow} started"
        case NodeFinished(status="failed"):
            return f"node {event.node}{_where(event.path)} failed: {event.error}"
        case NodeFinished():
            return f"node {event.node}{_where(event.path)} done in {event.duration_ms:.1f} ms"
        case FanOutStarted():
            count = len(event.branches)
            return (
                f"fan-out at {event.node}{_where(event.path)}: {count} "
                f"branch{'es' * (count != 1)} ({event.strategy}) -> {event.fan_in}"
            )
        case BranchFinished():
            outcome = "ok" if event.success else f"failed: {event.error_type}: {event.error}"
            return f"branch {event.path} {outcome} ({event.timing_ms:.1f} ms)"
        case BranchRetry():
            return (
                f"branch {event.path} failed ({event.error}); attempt {event.attempt} "
                f"in {event.delay_s:.3f} s"
            )
        case FanIn():
            return (
                f"fan-in {event.node}{_where(event.path)}: {event.branches} results, "
                f"{event.failed} failed"
            )
        case RunFinished(status="failed"):
            return f"run failed after {event.duration_ms:.1f} ms: {event.error}"
        case RunFinished():
            return f"run succeeded in {event.duration_ms:.1f} ms"
    return None


def _where(path: str) -> str:
    return f" [{path}]" if path else ""


def group_summary(key: str, results: Sequence[ParallelFlowResult], elapsed_s: float) -> str:
    """The line that ends a group: its members done, failed (timed out) and its time."""
    failed = sum(not r.success for r in results)
    timed_out = sum(r.timeout for r in results)
    late = f" ({timed_out} timed out)" if timed_out else ""
    return f"group {key}: {len(results)} done, {failed} failed{late} in {elapsed_s:.2f} s"


def member_line(result: ParallelFlowResult) -> str:
    """One plain line for a finished group member."""
    outcome = "ok" if result.success else f"failed: {result.error_type}: {result.error}"
    return f"member {result.branch} {outcome} ({result.timing_ms:.1f} ms)"


class PlainProgress:
    """Prints one line per event that matters (for logs and pipes); also a group listener."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = describe(event)
        if line is not None:
            self._print(line)

    def _print(self, line: str) -> None:
        with self.lock:
            print(line, file=self.stream, flush=True)

    def group_started(self, key: str, strategy: str) -> None:
        self._print(f"group {key} started ({strategy})")

    def member_added(self, key: str, member: str) -> None:
        """No line: the group's summary counts its members."""

    def member_finished(self, key: str, result: ParallelFlowResult) -> None:
        self._print(member_line(result))

    def group_finished(
        self, key: str, results: Sequence[ParallelFlowResult], elapsed_s: float
    ) -> None:
        self._print(group_summary(key, results, elapsed_s))

    def close(self) -> None:
        """Nothing to tear down."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LiveProgress:
    """A live terminal display: one bar per fan-out or group (its exact total, done and
    failed counts, elapsed time), a summary line as each ends, a line per finished
    main-path node. The screen is redrawn at every change, so that it shows what the
    events say (a bar is never left behind at an earlier count); a group listener too."""

    def __init__(self, stream: IO[str]) -> None:
        self.console = Console(file=stream)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            auto_refresh=False,
            # prints to stdout go through the display only when they share the terminal:
            # a piped stdout (`tead run > out.json`, a script's results) stays untouched
            redirect_stdout=sys.stdout.isatty(),
        )
        self.lock = threading.Lock()
        self.bars: dict[tuple[str, str], TaskID] = {}
        self.progress.start()

    def __call__(self, event: Event) -> None:
        with self.lock:
            self._show(event)
            self.progress.refresh()

    def _show(self, event: Event) -> None:
        match event:
            case FanOutStarted():
                total = len(event.branches)
                bar = self.progress.add_task(
                    f"{event.node} → {event.fan_in}", total=total, failed=0
                )
                self.bars[(event.path, event.fan_in)] = bar
            case BranchFinished():
                self._advance((event.path.rpartition("/")[0], event.fan_in), event.success)
                if not event.success:
                    self._print(f"[red]✗[/] {describe(event)}")
            case FanIn():
                ended = self.bars.pop((event.path, event.node), None)
                if ended is not None:
                    elapsed = self.progress.tasks[self._index(ended)].elapsed or 0.0
                    self._end(ended, f"[cyan]⇉[/] {describe(event)} in {elapsed:.2f} s")
            case NodeFinished(path="") | RunFinished():
                mark = "[red]✗[/]" if event.status == "failed" else "[green]✓[/]"
                self._print(f"{mark} {describe(event)}")

    def _advance(self, where: tuple[str, str], success: bool) -> None:
        bar = self.bars.get(where)
        if bar is None:
            return
        failed = self.progress.tasks[self._index(bar)].fields["failed"]
        self.progress.update(bar, advance=1, failed=failed + (not success))

    def _index(self, bar: TaskID) -> int:
        return next(i for i, task in enumerate(self.progress.tasks) if task.id == bar)

    def _end(self, bar: TaskID, line: str) -> None:
        """Show the bar's final count, then replace it with its summary line."""
        self.progress.refresh()
        self.progress.remove_task(bar)
        self._print(line)

    def _print(self, line: str) -> None:
        self.progress.refresh()  # without auto refresh, a print redraws the last refresh
        self.progress.console.print(line, highlight=False)

    def group_started(self, key: str, strategy: str) -> None:
        with self.lock:
            self.bars[(key, "")] = self.progress.add_task(f"group {key}", total=0, failed=0)
            self.progress.refresh()

    def member_added(self, key: str, member: str) -> None:
        with self.lock:
            bar = self.bars.get((key, ""))
            if bar is not None:
                total = self.progress.tasks[self._index(bar)].total or 0
                self.progress.update(bar, total=total + 1)
                self.progress.refresh()

    def member_finished(self, key: str, result: ParallelFlowResult) -> None:
        with self.lock:
            self._advance((key, ""), result.success)
            if not result.success:
                self._print(f"[red]✗[/] {member_line(result)}")
            self.progress.refresh()

    def group_finished(
        self, key: str, results: Sequence[ParallelFlowResult], elapsed_s: float
    ) -> None:
        with self.lock:
            bar = self.bars.pop((key, ""), None)
            if bar is not None:
                mark = "[red]✗[/]" if any(not r.success for r in results) else "[green]✓[/]"
                self._end(bar, f"{mark} {group_summary(key, results, elapsed_s)}")

    def close(self) -> None:
        self.progress.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_display(stream: IO[str] | None = None) -> LiveProgress | PlainProgress:
    """A progress display for runs (an event sink) and groups (a listener): live bars on a
    terminal, plain lines otherwise. `stream` defaults to stderr. Use it as a context
    manager (or call `close()`), so that a live display gives the terminal back."""
    out = stream or sys.stderr
    return LiveProgress(out) if out.isatty() else PlainProgress(out)
