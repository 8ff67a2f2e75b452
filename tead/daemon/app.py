"""The composition root of `tead serve`: builds everything, owns the task group, signals.

SIGTERM / SIGINT  stop triggers, let running runs finish within `shutdown_grace`,
                  interrupt the rest, exit 0
SIGHUP            read the config again (limits, retention, log level) and rescan
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvicorn

from tead.daemon import systemd
from tead.daemon.api import build_app
from tead.daemon.background import in_thread, logged, logged_async
from tead.daemon.config import DaemonConfig, load_config
from tead.daemon.execution import Execution, ThreadExecution
from tead.daemon.httpproto import deadline_protocol
from tead.daemon.instance import instance_lock, listening_socket
from tead.daemon.metrics import Metrics
from tead.daemon.operations import keep_versions, start_rerun, workflow_run_followers
from tead.daemon.records import RunRecord
from tead.daemon.registry import Changes, WorkflowEntry, WorkflowRegistry
from tead.daemon.runs import RunManager
from tead.daemon.runworkers import WorkerExecution
from tead.daemon.scheduler import Mark, Scheduler
from tead.daemon.secrets import Secrets, masked_log
from tead.daemon.store import Store
from tead.daemon.watcher import (
    FileChanges,
    FolderWatcher,
    base_folder,
    matching_changes,
    trigger_patterns,
    with_new_folders_contents,
)
from tead.errors import Conflict, StorageFullError, UsageError
from tead.executors.registry import Executors
from tead.parallel.breaker import BreakerRegistry
from tead.spec.files import folder_problem

log = logging.getLogger(__name__)


#: the config keys SIGHUP applies (the others need a restart)
RELOADED = ["max_concurrent_runs", "retention_runs", "max_log_bytes", "catchup_limit"]
RELOADED += ["pass_env", "limits", "log_level", "token"]


class _Server(uvicorn.Server):
    """uvicorn inside our loop: the daemon, not uvicorn, handles signals."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        *,
        config_file: str | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> None:
        if not config.loopback and not config.token:
            raise UsageError(
                f"listening on {config.listen} (not loopback) needs a token: "
                "set `token` in the config or TEAD_TOKEN"
            )
        self.config = config
        self.config_file = config_file
        self.overrides = overrides or {}
        self.metrics = Metrics()
        self.registry = WorkflowRegistry(
            config.workflows.resolve(), strict_permissions=config.strict_permissions
        )
        self.ready = False
        self._loading = asyncio.Lock()  # one read of the folder at a time, in order
        self._in_order = asyncio.Lock()  # file change batches, one after the other
        self._rescan_queued = False
        self._loads: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._tasks: asyncio.TaskGroup | None = None

    # --- wiring --------------------------------------------------------------------------

    async def run(self) -> int:
        config = self.config
        config.workflows.mkdir(mode=0o755, parents=True, exist_ok=True)
        if config.strict_permissions and (problem := folder_problem(config.workflows)):
            raise UsageError(f"{problem} (chmod go-w it, or set strict_permissions: false)")
        with instance_lock(config.state_dir), listening_socket(config.host, config.port) as sock:
            self.secrets = Secrets(config.state_dir / "secrets")
            if problem := self.secrets.folder_problem():
                raise UsageError(problem)
            self.store = Store(config.state_dir / "tead.db")
            self.disabled = self.store.disabled_workflows()
            try:
                with masked_log(self.secrets):  # the daemon's log: thread nodes' records too
                    return await self._serve(sock)
            finally:
                self.store.close()

    async def _serve(self, sock: socket.socket) -> int:
        config = self.config
        self.breakers = BreakerRegistry(self.store)
        for snapshot in self.breakers.states().values():
            self.metrics.breaker(snapshot.name, snapshot.state, moved=False)
        self.execution = self._execution()
        server = _Server(
            uvicorn.Config(
                build_app(self),
                host=config.host,
                port=config.port,
                log_config=None,
                access_log=False,
                lifespan="off",
                http=deadline_protocol(config.request_timeout),
            )
        )
        try:
            async with asyncio.TaskGroup() as tasks:
                self._tasks = tasks
                self.runs = RunManager(
                    store=self.store,
                    metrics=self.metrics,
                    execution=self.execution,
                    max_concurrent=config.max_concurrent_runs,
                    retention=config.retention_runs,
                    spawn=tasks.create_task,
                    max_state_bytes=config.max_state_bytes,
                    stop_grace_s=config.stop_grace,
                    secrets=self.secrets,
                    on_end=self._run_ended,
                    max_log_bytes=config.max_log_bytes,
                )
                self.scheduler = Scheduler(
                    store=self.store,
                    metrics=self.metrics,
                    fire=logged(self._fire, log),
                    lookup=self.registry.get,
                    catchup_limit=config.catchup_limit,
                )
                self.watcher = FolderWatcher(
                    self.registry.folder,
                    extra_roots=self._trigger_roots,
                    on_changes=logged(self._on_file_changes, log),
                    on_rescan=logged(self.rescan, log),
                    rescan_interval_s=config.rescan_interval,
                )
                serving = tasks.create_task(server.serve(sockets=[sock]))
                self._install_signals()
                changes = await self._load(None)  # off the loop: /healthz answers meanwhile
                self.runs.recover(self.registry.get)  # before any trigger can queue a run
                with contextlib.suppress(StorageFullError):  # a full disk: prune later
                    self.store.prune(config.retention_runs)
                self._apply(changes, initial=True)
                loops = [
                    tasks.create_task(c)
                    for c in (
                        self.scheduler.run(),
                        self.watcher.run(),
                        self.watcher.guard(),
                        systemd.watchdog(),
                        self.runs.record_unrecorded(),
                    )
                ]
                self.ready = True
                systemd.notify("READY=1")
                log.info(
                    "tead serving on %s, workflows in %s, state in %s",
                    config.listen,
                    self.registry.folder,
                    config.state_dir,
                )
                await self._stop.wait()
                systemd.notify("STOPPING=1")
                log.info(
                    "stopping: triggers off, %d run(s) get %.0f s to finish",
                    self.runs.running,
                    config.shutdown_grace,
                )
                for loop in [*loops, *self._loads]:
                    loop.cancel()
                await self.runs.shutdown(config.shutdown_grace)
                server.should_exit = True
                await serving
        finally:
            await self.execution.close()
        log.info("stopped")
        return 0

    def _execution(self) -> Execution:
        """Where runs execute: worker processes (`isolation: process`, kept warm from now
        on) or, with `isolation: thread`, threads of this process."""
        config = self.config
        if config.isolation == "thread":
            return ThreadExecution(
                metrics=self.metrics, breakers=self.breakers, executors=Executors()
            )
        execution = WorkerExecution(
            size=config.max_concurrent_runs,
            metrics=self.metrics,
            breakers=self.breakers,
            max_state_bytes=config.max_state_bytes,
            pass_env=config.pass_env,
            limits=config.limits,
            secrets=self.secrets,
            journals=self.store if config.journal else None,
        )
        execution.warm_up()
        self.registry.check_uses = execution.check_uses  # user modules never import here
        return execution

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

    # --- workflows and triggers ------------------------------------------------------------

    async def _load(self, paths: list[Path] | None) -> Changes:
        """Read and load workflow files (None: the whole folder) in a worker thread, so the
        event loop (API, schedules) goes on while files are parsed and `uses:` imported."""
        async with self._loading:
            if paths is None:
                self._rescan_queued = False  # changes from now on need another rescan
            loaded = await in_thread(self.registry.prepare, paths)
            changes = self.registry.commit(loaded)
            await in_thread(self._series_at_zero, changes.loaded)  # ~0.1 ms a workflow
            return changes

    def _series_at_zero(self, names: set[str]) -> None:
        for name in names:
            entry = self.registry.get(name)
            if entry is not None and entry.workflow is not None:
                self.metrics.workflow_loaded(entry.workflow)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task of the daemon; its exception is logged, not fatal."""
        assert self._tasks is not None
        task = self._tasks.create_task(logged_async(work, log))
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

    def rescan(self) -> None:
        """Look at the whole folder again, soon (at most one rescan waits)."""
        if not self._rescan_queued:
            self._rescan_queued = True
            self._spawn(self._rescan())

    async def _rescan(self) -> None:
        self._apply(await self._load(None))

    def _apply(self, changes: Changes, *, initial: bool = False) -> None:
        if changes.errors:
            self.metrics.workflow_load_errors.inc(changes.errors)
        for name in changes.removed:
            self.scheduler.unload(name)
            log.info("workflow %s removed", name)
        for name in sorted(changes.loaded):
            entry = self.registry.get(name)
            if entry is not None:
                self.scheduler.load(entry)
                log.info(
                    "workflow %s %s from %s",
                    name,
                    "loaded" if initial else "reloaded",
                    entry.path.name,
                )
        for entry in self.registry.entries():
            if entry.error and (initial or entry.name in changes.loaded or changes.errors):
                log.warning(
                    "workflow file %s does not load: %s",
                    entry.path.name,
                    entry.error.splitlines()[0],
                )
        self.metrics.workflows_loaded.set(len(self.registry.workflows()))
        if changes:
            with contextlib.suppress(StorageFullError):  # then re-runs of them may fail
                keep_versions(self.registry, self.store, changes.loaded)
        if changes and not initial:
            self.watcher.restart()

    def _trigger_roots(self) -> list[Path]:
        folders = (base_folder(p) for e in self.registry.workflows() for p in trigger_patterns(e))
        return [f for f in folders if f is not None]

    def _on_file_changes(self, changes: FileChanges, seen_at: float) -> None:
        self._spawn(self._file_changes(changes, seen_at))

    async def _file_changes(self, changes: FileChanges, seen_at: float) -> None:
        """Reload changed workflow files (off the loop), then fire watch triggers; batches
        are handled in the order they came."""
        async with self._in_order:
            changes = await in_thread(with_new_folders_contents, changes)
            folder = self.registry.folder
            dirty = [Path(p) for p, _ in changes if Path(p).parent == folder]
            if dirty:
                self._apply(await self._load(dirty))
            self._fire_watch(changes, seen_at)

    def _fire_watch(self, changes: FileChanges, seen_at: float) -> None:
        if not self.runs.accepting:
            return
        for entry in self.registry.workflows():
            matched = matching_changes(entry, changes)
            if matched and entry.name not in self.disabled:
                self.runs.submit(entry, {"kind": "watch", "changes": matched}, seen_at=seen_at)

    def _fire(self, entry: WorkflowEntry, trigger: dict[str, Any], mark: Mark) -> None:
        if self.runs.accepting and entry.name not in self.disabled:
            self.runs.submit(entry, trigger, mark=mark)
        else:
            self.store.set_last_fire(*mark)

    def describe(self, entry: WorkflowEntry) -> dict[str, Any]:
        """A workflow file as the API lists it."""
        spec = entry.workflow.spec if entry.workflow else None
        triggers = (
            spec.on.model_dump(mode="json", exclude_defaults=False) if spec and spec.on else {}
        )
        enabled = entry.name not in self.disabled
        if triggers.get("schedule") and entry.workflow is not None:
            upcoming = self.scheduler.next_fires(entry.workflow)
            for schedule, when in zip(triggers["schedule"], upcoming, strict=True):
                schedule["next_fire"] = when if enabled else None
        return {
            "name": entry.name,
            "path": str(entry.path),
            "valid": entry.valid,
            "error": entry.error,
            "description": spec.description if spec else None,
            "triggers": triggers,
            "content_hash": entry.content_hash,
            "enabled": enabled,
        }

    # --- operations (tead.daemon.operations) -----------------------------------------------

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable a workflow's triggers (persisted; StorageFullError if not)."""
        self.store.set_disabled(name, not enabled)
        if enabled:
            self.disabled.discard(name)
        else:
            self.disabled.add(name)
        log.info("workflow %s %s", name, "enabled" if enabled else "disabled")

    def _run_ended(self, ended: RunRecord) -> None:
        """Start the runs that `on.workflow_run` asks for when a run ends."""
        if not self.runs.accepting:
            return
        for entry, trigger in workflow_run_followers(
            self.registry.workflows(), ended, self.disabled
        ):
            self.runs.submit(entry, trigger)

    def rerun(self, record: RunRecord, *, from_failure: bool = False) -> RunRecord:
        """A new run of the version `record` ran, with its trigger data and inputs; with
        `from_failure`, the steps `record` completed are not run again (its journal)."""
        if from_failure and self.config.isolation != "process":
            raise Conflict("resuming a run needs isolation: process (each run in a worker)")
        return start_rerun(self.runs, self.registry, record, from_failure=from_failure)

    def reset_breaker(self, name: str) -> None:
        change = self.breakers.reset(name)
        self.metrics.breaker(name, self.breakers.states()[name].state, moved=change is not None)

    def reload(self) -> None:
        """SIGHUP: read the config again and rescan the folder."""
        try:
            fresh = load_config(self.config_file, overrides=self.overrides)
        except UsageError as exc:
            log.error("reload: %s; keeping the old config", exc)
        else:
            self.runs.max_concurrent = fresh.max_concurrent_runs
            self.execution.configure(
                size=fresh.max_concurrent_runs, pass_env=fresh.pass_env, limits=fresh.limits
            )
            self.runs.retention = fresh.retention_runs
            self.runs.max_log_bytes = fresh.max_log_bytes
            self.scheduler.catchup_limit = fresh.catchup_limit
            logging.getLogger().setLevel(fresh.log_level.upper())
            self.config = self.config.model_copy(
                update={key: getattr(fresh, key) for key in RELOADED}
            )
            log.info("config reloaded")
        self.rescan()
        self.runs._pump()
