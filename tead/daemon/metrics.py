"""Prometheus metrics (CONTRACT §4), recorded in the daemon process only.

Branch timings travel back with the results, so worker processes need no multiprocess
mode. Buckets fit jobs, not web requests. Labels never carry run ids or paths.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tead.daemon.records import RunRecord, RunStatus
from tead.daemon.zeroseries import BornAtZero
from tead.engine.events import (
    BranchFinished,
    BranchStarted,
    CircuitChanged,
    DaskRerun,
    Event,
    FanOutStarted,
    RemoteHost,
)
from tead.graph.compiled import WorkflowGraph
from tead.parallel.breaker import CircuitState
from tead.version import __version__

RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800)
LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30, 60, 300)
BRANCH_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600)
WIDTH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
STATE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}
#: how a finished run can end, and a branch (the `status` and `outcome` label values)
RUN_ENDS = tuple(str(status) for status in RunStatus if status.finished)
BRANCH_OUTCOMES = ("success", "error", "timeout", "circuit_open", "cancelled")


class Metrics:
    """Every tead metric, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        #: the metrics whose series are born at 0 for each loaded workflow (`workflow_loaded`)
        self.born = z = BornAtZero(r)
        self.runs = z.counter("tead_runs_total", "Finished runs", ["workflow", "trigger", "status"])
        self.run_duration = Histogram(
            "tead_run_duration_seconds",
            "Run duration, start to end",
            ["workflow", "status"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.runs_in_progress = z.gauge("tead_runs_in_progress", "Runs running now", ["workflow"])
        self.queue_wait = z.histogram(
            "tead_run_queue_wait_seconds", "Time from queued to started", ["workflow"], WAIT_BUCKETS
        )
        self.schedule_delay = z.histogram(
            "tead_schedule_delay_seconds",
            "How late a scheduled run started",
            ["workflow"],
            LATENESS_BUCKETS,
        )
        self.trigger_latency = z.histogram(
            "tead_trigger_latency_seconds",
            "File event seen to run started",
            ["kind"],
            LATENESS_BUCKETS,
        )
        self.flows = z.counter(
            "tead_parallel_flows_total",
            "Finished fan-out branches",
            ["workflow", "strategy", "outcome"],
        )
        self.flow_duration = z.histogram(
            "tead_parallel_flow_duration_seconds",
            "Branch duration",
            ["workflow", "strategy"],
            BRANCH_BUCKETS,
        )
        self.flow_retries = z.counter(
            "tead_parallel_flow_retries_total", "Branch retries", ["workflow", "strategy"]
        )
        self.flows_in_flight = z.gauge(
            "tead_parallel_flows_in_flight", "Branches running now", ["strategy"]
        )
        self.fanout_width = z.histogram(
            "tead_parallel_fanout_width", "Branches per fan-out", ["workflow"], WIDTH_BUCKETS
        )
        self.breaker_state = Gauge(
            "tead_circuit_breaker_state",
            "Circuit breaker state (0 closed, 1 half-open, 2 open)",
            ["breaker"],
            registry=r,
        )
        self.breaker_transitions = z.counter(
            "tead_circuit_breaker_transitions_total",
            "Circuit breaker state changes",
            ["breaker", "to"],
        )
        self.missed_schedules = z.counter(
            "tead_missed_schedules_total",
            "Scheduled fires skipped after downtime",
            ["workflow", "policy"],
        )
        self.workflows_loaded = Gauge("tead_workflows_loaded", "Workflows loaded", registry=r)
        self.workflow_load_errors = Counter(
            "tead_workflow_load_errors_total", "Workflow files that failed to load", registry=r
        )
        self.remote_host_up = Gauge(
            "tead_remote_host_up", "Remote host reachable", ["host"], registry=r
        )
        self.remote_commands = z.counter(
            "tead_remote_commands_total", "Remote commands run", ["host"]
        )
        self.dask_reruns = z.counter(
            "tead_dask_task_reruns_total",
            "Branches a Dask scheduler ran again after losing the worker that held them",
            ["workflow"],
        )
        Info("tead_build", "tead build", registry=r).info({"version": __version__})
        self._lock = threading.Lock()
        self._breakers_shown: set[str] = set()
        self.known: set[str] = set()  # workflows loaded since the start (their series exist)

        #: the queued runs per workflow (the run manager sets it), read at each scrape
        self.queued: Callable[[], Mapping[str, int]] = dict
        r.register(_QueueDepth(self))
        ProcessCollector(registry=r)  # process_* of the daemon (CPU, memory, open files)

    def workflow_loaded(self, workflow: WorkflowGraph) -> None:
        """Show at 0 the series a loaded workflow can move, so that `rate()` and
        `increase()` see its first event (a series born at 1 looks like no change). They
        are noted, not made: `self.born` adds the zeros at each scrape until they move.

        Counters, for each way a run can start and end; gauges of runs and branches
        running; branch counters, for each strategy its fan-outs use; breaker transitions
        (and the state, closed, of a breaker never seen); missed schedules under its
        catch-up policy; commands sent to each remote host it names; Dask re-runs, if it
        fans out on dask. Histograms with a status label are left out (5 x 18 series).
        """
        name = workflow.name
        self.known.add(name)
        z = self.born
        spec = workflow.spec
        on = spec.on if spec is not None else None
        kinds = ["dispatch"]
        if on is not None and on.schedule:
            kinds += ["schedule", "catchup"]
            z.expect(self.missed_schedules, name, on.catchup)
            z.expect(self.schedule_delay, name)
        if on is not None and on.watch is not None:
            kinds.append("watch")
            z.expect(self.trigger_latency, "watch")
        for kind in kinds:
            for status in RUN_ENDS:
                z.expect(self.runs, name, kind, status)
        z.expect(self.runs_in_progress, name)
        z.expect(self.queue_wait, name)
        fanouts = [f for group in workflow.fanouts.values() for f in group]
        if fanouts:
            z.expect(self.fanout_width, name)
        for strategy in {f.config.strategy for f in fanouts}:
            for outcome in BRANCH_OUTCOMES:
                z.expect(self.flows, name, strategy, outcome)
            z.expect(self.flow_retries, name, strategy)
            z.expect(self.flow_duration, name, strategy)
            z.expect(self.flows_in_flight, strategy)
        if any(f.config.strategy == "dask" for f in fanouts):
            z.expect(self.dask_reruns, name)
        for fanout in fanouts:
            remote = fanout.config.remote
            if fanout.config.strategy == "remote" and remote is not None:
                for host in remote.hosts:  # as configured: the executor's label for it
                    z.expect(self.remote_commands, host)
            if fanout.config.circuit_breaker is None:
                continue
            for target in fanout.targets:  # a branch's breaker: `<workflow>:<its entry>`
                breaker = f"{name}:{target}"
                for state in CircuitState:
                    z.expect(self.breaker_transitions, breaker, str(state))
                with self._lock:
                    if breaker not in self._breakers_shown:
                        self._breakers_shown.add(breaker)
                        self.breaker_state.labels(breaker).set(0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def breaker(self, name: str, state: CircuitState, *, moved: bool = True) -> None:
        with self._lock:
            self._breakers_shown.add(name)
            self.breaker_state.labels(name).set(STATE_VALUE[state])
        if moved:
            self.breaker_transitions.labels(name, str(state)).inc()

    def run_ended(self, record: RunRecord, status: RunStatus, at: datetime | None) -> None:
        """Count a run that ended `at` (None: it ended while the daemon was down, and was
        never counted running)."""
        kind = record.trigger.get("kind", "")
        self.runs.labels(record.workflow, kind, str(status)).inc()
        if at is None:
            return
        self.runs_in_progress.labels(record.workflow).dec()
        if record.started_at is not None:
            duration = (at - record.started_at).total_seconds()
            self.run_duration.labels(record.workflow, str(status)).observe(duration)

    def run_observer(self, workflow: str) -> RunEventMetrics:
        return RunEventMetrics(self, workflow)


class _QueueDepth(Collector):
    """`tead_runs_queued`: runs waiting to start, per workflow."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "tead_runs_queued", "Runs queued, waiting to start", labels=["workflow"]
        )
        queued = dict.fromkeys(self._metrics.known, 0) | dict(self._metrics.queued())
        for workflow, count in sorted(queued.items()):  # 0 for each loaded workflow
            family.add_metric([workflow], count)
        yield family


def _outcome(event: BranchFinished) -> str:
    if event.success:
        return "success"
    if event.timeout:
        return "timeout"
    return {"CircuitOpenError": "circuit_open", "FanOutCancelledError": "cancelled"}.get(
        event.error_type or "", "error"
    )


class RunEventMetrics:
    """Turns one run's engine events into metrics (called from the run's threads)."""

    def __init__(self, metrics: Metrics, workflow: str) -> None:
        self.metrics = metrics
        self.workflow = workflow
        self._lock = threading.Lock()
        self._active: dict[str, str] = {}  # branch path -> strategy, while it runs

    def __call__(self, event: Event) -> None:
        m = self.metrics
        match event:
            case BranchStarted(path=path, strategy=strategy):
                with self._lock:
                    first = path not in self._active
                    self._active[path] = strategy
                if first:
                    m.flows_in_flight.labels(strategy).inc()
            case BranchFinished(path=path, strategy=strategy):
                with self._lock:
                    was_running = self._active.pop(path, None) is not None
                if was_running:
                    m.flows_in_flight.labels(strategy).dec()
                m.flows.labels(self.workflow, strategy, _outcome(event)).inc()
                m.flow_duration.labels(self.workflow, strategy).observe(event.timing_ms / 1000)
                if event.retry_count:
                    m.flow_retries.labels(self.workflow, strategy).inc(event.retry_count)
            case FanOutStarted(branches=branches):
                m.fanout_width.labels(self.workflow).observe(len(branches))
            case CircuitChanged(name=name, new=new):
                m.breaker(name, new)
            case RemoteHost(host=host, up=up, commands=commands):
                m.remote_host_up.labels(host).set(1 if up else 0)
                m.remote_commands.labels(host).inc(commands)
            case DaskRerun():
                m.dask_reruns.labels(self.workflow).inc()
            case _:
                pass

    def close(self) -> None:
        """The run ended: branches still counted as running (abandoned) stop counting."""
        with self._lock:
            active, self._active = list(self._active.values()), {}
        for strategy in active:
            self.metrics.flows_in_flight.labels(strategy).dec()
