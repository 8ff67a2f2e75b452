"""Showing a run's events to a person: a live display on a terminal, plain lines otherwise."""

from __future__ import annotations

import threading
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

Event = dict[str, Any]


def describe(event: Event) -> str | None:
    """One plain line for an event, or None for events not worth a line."""
    kind = event["event"]
    where = f" [{event['path']}]" if event.get("path") else ""
    if kind == "run_started":
        return f"run {event['workflow']} started"
    if kind == "node_finished":
        if event["status"] == "failed":
            return f"node {event['node']}{where} failed: {event['error']}"
        return f"node {event['node']}{where} done in {event['duration_ms']:.1f} ms"
    if kind == "fanout_started":
        count = len(event["branches"])
        return (
            f"fan-out at {event['node']}{where}: {count} branch{'es' * (count != 1)} "
            f"({event['strategy']}) -> {event['fan_in']}"
        )
    if kind == "branch_finished":
        outcome = "ok" if event["success"] else f"failed: {event['error_type']}: {event['error']}"
        return f"branch {event['path']} {outcome} ({event['timing_ms']:.1f} ms)"
    if kind == "branch_retry":
        return (
            f"branch {event['path']} failed ({event['error']}); attempt {event['attempt']} "
            f"in {event['delay_s']:.3f} s"
        )
    if kind == "fan_in":
        return (
            f"fan-in {event['node']}{where}: {event['branches']} results, {event['failed']} failed"
        )
    if kind == "run_finished":
        if event["status"] == "failed":
            return f"run failed after {event['duration_ms']:.1f} ms: {event['error']}"
        return f"run succeeded in {event['duration_ms']:.1f} ms"
    return None


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
        kind = event["event"]
        with self.lock:
            if kind == "fanout_started":
                key = (event["path"], event["fan_in"])
                self.fanouts[key] = self.progress.add_task(
                    f"{event['node']} → {event['fan_in']}", total=len(event["branches"])
                )
            elif kind == "branch_finished":
                parent = event["path"].rpartition("/")[0]
                task = self.fanouts.get((parent, event["fan_in"]))
                if task is not None:
                    self.progress.advance(task)
                if not event["success"]:
                    self.progress.console.print(f"[red]✗[/] {describe(event)}")
            elif kind == "fan_in":
                task = self.fanouts.pop((event["path"], event["node"]), None)
                if task is not None:
                    self.progress.remove_task(task)
                if not event["path"]:
                    self.progress.console.print(f"[cyan]⇉[/] {describe(event)}")
            elif kind in ("node_finished", "run_finished") and not event.get("path"):
                failed = event["status"] == "failed"
                mark = "[red]✗[/]" if failed else "[green]✓[/]"
                self.progress.console.print(f"{mark} {describe(event)}", highlight=False)

    def close(self) -> None:
        self.progress.stop()
