"""Series born at 0, cheaply: the label sets a loaded workflow can move are noted (a set
insert each) and shown at 0 by the scrape until they first move, instead of a
prometheus-client child each at load (a lock per value, 17 for a histogram: ~0.3 ms a
workflow, on the daemon's start-up path with 1 000 workflows; bench/daemon_startup.py).

A metric made here is an ordinary prometheus-client metric (`.labels(...).inc()` as
usual) that this collector exposes: its own series, then each expected label set it does
not have yet, at 0 (a histogram: every bucket, count and sum). Once a series moves it is
the metric's own, and the zero is no longer added.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import INF, floatToGoString

#: how the exposition writes a bucket's bound (`le`): 1 -> "1.0", inf -> "+Inf"
_go_float = cast(Callable[[float], str], floatToGoString)
M = TypeVar("M", Counter, Gauge, Histogram)
#: the sample that names each series of a family, by the family's type
_KEY_SUFFIX = {"counter": "_total", "gauge": "", "histogram": "_count"}


@dataclass
class _Expected:
    labelnames: tuple[str, ...]
    bounds: tuple[str, ...]  # a histogram's `le` values, "+Inf" included
    values: set[tuple[str, ...]] = field(default_factory=set)


class BornAtZero(Collector):
    """The metrics it makes, with their expected series at 0 until they move."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._metrics: list[tuple[Counter | Gauge | Histogram, _Expected]] = []
        self._expected: dict[int, _Expected] = {}  # by id() of the metric
        registry.register(self)

    def counter(self, name: str, documentation: str, labelnames: Sequence[str]) -> Counter:
        return self._add(Counter(name, documentation, labelnames, registry=None), labelnames)

    def gauge(self, name: str, documentation: str, labelnames: Sequence[str]) -> Gauge:
        return self._add(Gauge(name, documentation, labelnames, registry=None), labelnames)

    def histogram(
        self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> Histogram:
        metric = Histogram(name, documentation, labelnames, buckets=buckets, registry=None)
        bounds = [*buckets, *([] if buckets[-1] == INF else [INF])]
        return self._add(metric, labelnames, tuple(_go_float(b) for b in bounds))

    def _add(self, metric: M, labelnames: Sequence[str], bounds: tuple[str, ...] = ()) -> M:
        expected = _Expected(tuple(labelnames), bounds)
        self._metrics.append((metric, expected))
        self._expected[id(metric)] = expected
        return metric

    def expect(self, metric: Counter | Gauge | Histogram, *values: str) -> None:
        """Show `metric{values}` at 0 until it moves (its label values, in order)."""
        expected = self._expected[id(metric)]
        assert len(values) == len(expected.labelnames), (values, expected.labelnames)
        with self._lock:
            expected.values.add(values)

    def collect(self) -> Iterable[Metric]:
        for metric, expected in self._metrics:
            for family in metric.collect():
                if family.type in _KEY_SUFFIX:
                    self._add_zeros(family, expected)
                yield family

    def _add_zeros(self, family: Metric, expected: _Expected) -> None:
        key = family.name + _KEY_SUFFIX[family.type]
        names = expected.labelnames
        present = {tuple(s.labels[n] for n in names) for s in family.samples if s.name == key}
        with self._lock:
            missing = sorted(expected.values - present)
        for values in missing:
            labels = dict(zip(names, values, strict=True))
            if family.type != "histogram":
                family.add_sample(key, labels, 0.0)
                continue
            for bound in expected.bounds:
                family.add_sample(family.name + "_bucket", {**labels, "le": bound}, 0.0)
            family.add_sample(key, labels, 0.0)
            family.add_sample(family.name + "_sum", labels, 0.0)
