"""Helpers for the daemon benchmarks: a real `tead serve` on a temp folder, statistics,
the daemon's /proc figures and its Prometheus histograms.

The scripts put the repository root on sys.path before importing this (tests.daemon_fixture
starts the daemon)."""

from __future__ import annotations

import contextlib
import math
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.daemon_fixture import DaemonProcess, free_port

# The daemon's own default (the test fixture uses 1 s): a benchmark measures the defaults.
DEFAULT_ENV = {"TEAD_RESCAN_INTERVAL": "10"}


@contextlib.contextmanager
def daemon(
    workflows: dict[str, str] | None = None,
    *,
    env: dict[str, str] | None = None,
    root: Path | None = None,
    wait: bool = True,
) -> Iterator[DaemonProcess]:
    """A started `tead serve` with these workflow files, stopped (or killed) at the end."""
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tead-bench-")))
        proc = DaemonProcess(root=root, port=free_port(), env={**DEFAULT_ENV, **(env or {})})
        for name, text in (workflows or {}).items():
            proc.write(name, text)
        proc.start(wait=wait)
        try:
            yield proc
        finally:
            try:
                proc.stop(timeout_s=30)
            except subprocess.TimeoutExpired:  # never leave a daemon behind
                proc.kill()


def client(proc: DaemonProcess) -> httpx.Client:
    """A keep-alive client for the daemon's API."""
    return httpx.Client(base_url=proc.url, timeout=30)


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks (numpy's default)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def parse_time(value: str) -> float:
    """An API timestamp (ISO 8601, UTC, `Z`) as a POSIX time."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS (kB) and Threads of a process, from /proc/PID/status."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            found[key] = int(value.split()[0])
    return found


def wait_idle(http: httpx.Client, *, timeout_s: float = 600, poll_s: float = 0.05) -> float:
    """Wait until no run is queued or running; returns when that was seen (monotonic)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy = False
        for status in ("queued", "running"):
            runs = http.get("/api/v1/runs", params={"status": status, "limit": 1}).json()
            if runs["runs"]:
                busy = True
                break
        if not busy:
            return time.monotonic()
        time.sleep(poll_s)
    raise TimeoutError(f"runs still queued or running after {timeout_s} s")


_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$"
)


def histogram(exposition: str, name: str, **labels: str) -> dict[str, Any]:
    """One histogram's cumulative buckets, sum and count from a /metrics text."""
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in exposition.splitlines():
        match = _SAMPLE.match(line)
        if not match or not match["name"].startswith(name):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        if any(found.get(k) != v for k, v in labels.items()):
            continue
        value = float(match["value"])
        suffix = match["name"][len(name) :]
        if suffix == "_bucket":
            buckets.append((float(found["le"]), value))
        elif suffix == "_sum":
            total = value
        elif suffix == "_count":
            count = value
    buckets.sort()
    return {"buckets": buckets, "sum": total, "count": count}


def histogram_quantile(hist: dict[str, Any], q: float) -> float:
    """Prometheus' histogram_quantile: linear inside the bucket that holds the rank."""
    buckets: list[tuple[float, float]] = hist["buckets"]
    count: float = hist["count"]
    if not count:
        return math.nan
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower_bound
            share = (rank - lower_count) / (cumulative - lower_count) if cumulative else 0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, cumulative
    return lower_bound


def describe_histogram(hist: dict[str, Any]) -> str:
    if not hist["count"]:
        return "no observations"
    mean = hist["sum"] / hist["count"]
    return (
        f"n={hist['count']:.0f}, mean {ms(mean)}, p50 ~{ms(histogram_quantile(hist, 0.5))}, "
        f"p95 ~{ms(histogram_quantile(hist, 0.95))} (bucket-interpolated)"
    )


def counter_total(exposition: str, name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include `labels`."""
    total = 0.0
    for line in exposition.splitlines():
        match = _SAMPLE.match(line)
        if not match or match["name"] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match["value"])
    return total
