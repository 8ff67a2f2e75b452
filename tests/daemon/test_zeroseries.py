"""BornAtZero: expected series show at 0 until they move, then as the metric's own, once;
the exposition stays valid for Prometheus' parser (promtool checks the daemon's elsewhere)."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tead.daemon.zeroseries import BornAtZero


def exposed(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    text = generate_latest(registry).decode()
    lines = [x for x in text.splitlines() if x and not x.startswith("#")]
    assert len(lines) == len(set(lines)), "a series shown twice"
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    ]


def test_expected_series_are_zero_until_they_move_and_never_shown_twice() -> None:
    registry = CollectorRegistry()
    born = BornAtZero(registry)
    runs = born.counter("t_runs_total", "runs", ["workflow", "status"])
    busy = born.gauge("t_busy", "busy", ["workflow"])
    wait = born.histogram("t_wait_seconds", "wait", ["workflow"], (0.5, 2))
    assert exposed(registry) == []  # nothing expected, nothing moved: no series
    for status in ("ok", "failed"):
        born.expect(runs, "a", status)
    born.expect(busy, "a")
    born.expect(wait, "a")
    born.expect(wait, "a")  # twice: still one series
    assert sorted(exposed(registry), key=str) == sorted(
        [
            ("t_runs_total", {"workflow": "a", "status": "ok"}, 0.0),
            ("t_runs_total", {"workflow": "a", "status": "failed"}, 0.0),
            ("t_busy", {"workflow": "a"}, 0.0),
            *(
                ("t_wait_seconds_bucket", {"workflow": "a", "le": le}, 0.0)
                for le in ("0.5", "2.0", "+Inf")
            ),
            ("t_wait_seconds_count", {"workflow": "a"}, 0.0),
            ("t_wait_seconds_sum", {"workflow": "a"}, 0.0),
        ],
        key=str,
    )
    runs.labels("a", "failed").inc()
    busy.labels("a").inc()
    wait.labels("a").observe(1)
    runs.labels("b", "ok").inc()  # never expected: shown as it moved
    found = exposed(registry)
    assert ("t_runs_total", {"workflow": "a", "status": "failed"}, 1.0) in found
    assert ("t_runs_total", {"workflow": "a", "status": "ok"}, 0.0) in found
    assert ("t_runs_total", {"workflow": "b", "status": "ok"}, 1.0) in found
    assert ("t_busy", {"workflow": "a"}, 1.0) in found
    assert ("t_wait_seconds_bucket", {"workflow": "a", "le": "0.5"}, 0.0) in found
    assert ("t_wait_seconds_bucket", {"workflow": "a", "le": "2.0"}, 1.0) in found
    assert ("t_wait_seconds_count", {"workflow": "a"}, 1.0) in found
    assert len(found) == 3 + 1 + 5


def test_expecting_while_scraping_is_safe() -> None:
    """Workflows load (in a worker thread) while Prometheus scrapes."""
    registry = CollectorRegistry()
    born = BornAtZero(registry)
    runs = born.counter("t_runs_total", "runs", ["workflow"])
    done = threading.Event()

    def load() -> None:
        for n in range(20000):
            born.expect(runs, f"w{n}")
        done.set()

    thread = threading.Thread(target=load)
    thread.start()
    while not done.is_set():
        generate_latest(registry)
    thread.join()
    assert len(exposed(registry)) == 20000
