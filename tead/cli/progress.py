"""Showing a run's events to a person: a live display on a terminal, plain lines otherwise."""

from __future__ import annotations

import threading
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

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


class PlainProgress:
    """Prints one line per event that matters (for logs and pipes)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = describe(event)
        if line is not None:
            with self.lock:
                print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """Nothing to tear down."""


class LiveProgress:
    """A live terminal display: one bar per fan-out, a line per finished main-path node."""

    def __init__(self, stream: IO[str]) -> None:
        self.console = Console(file=stream)
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=self.console,
            transient=True,
        )
        self.lock = threading.Lock()
        self.fanouts: dict[tuple[str, str], Any] = {}
        self.progress.start()

    def __call__(self, event: Event) -> None:
        with self.lock:
            match event:
                case FanOutStarted():
                    self.fanouts[(event.path, event.fan_in)] = self.progress.add_task(
                        f"{event.node} → {event.fan_in}", total=len(event.branches)
                    )
                case BranchFinished():
                    parent = event.path.rpartition("/")[0]
                    task = self.fanouts.get((parent, event.fan_in))
                    if task is not None:
                        self.progress.advance(task)
                    if not event.success:
                        self.progress.console.print(f"[red]✗[/] {describe(event)}")
                case FanIn():
                    task = self.fanouts.pop((event.path, event.node), None)
                    if task is not None:
                        self.progress.remove_task(task)
                    if not event.path:
                        self.progress.console.print(f"[cyan]⇉[/] {describe(event)}")
                case NodeFinished(path="") | RunFinished():
                    mark = "[red]✗[/]" if event.status == "failed" else "[green]✓[/]"
                    self.progress.console.print(f"{mark} {describe(event)}", highlight=False)

    def close(self) -> None:
        self.progress.stop()
