"""The composition root of `tead serve`: builds everything, owns the task group, signals.

SIGTERM / SIGINT  stop triggers, let running runs finish within `shutdown_grace`,
                  interrupt the rest, exit 0
SIGHUP            read the config again (limits, retention, log level) and rescan
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import IO, Any, ParamSpec, TypeVar

import uvicorn

from tead.daemon import systemd
from tead.daemon.api import build_app
from tead.daemon.config import DaemonConfig, load_config
from tead.daemon.database import private_file
from tead.daemon.httpproto import deadline_protocol
from tead.daemon.metrics import Metrics
from tead.daemon.registry import Changes, WorkflowEntry, WorkflowRegistry
from tead.daemon.runs import RunManager
from tead.daemon.scheduler import Mark, Scheduler
from tead.daemon.store import Store
from tead.daemon.watcher import (
    FileChanges,
    FolderWatcher,
    base_folder,
    matching_changes,
    trigger_patterns,
)
from tead.errors import StorageFullError, UsageError
from tead.executors import Executors
from tead.parallel.breaker import BreakerRegistry
from tead.spec.files import folder_problem

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
LOADER_SWITCH_S = 0.001  # while loading, the event loop gets the GIL within 1 ms (not 5 ms)


class _Server(uvicorn.Server):
    """uvicorn inside our loop: the daemon, not uvicorn, handles signals."""

    def capture_signals(self) -> contextlib.AbstractContextManager[None]:  # type: ignore[override]
        return contextlib.nullcontext()


@contextlib.contextmanager
def instance_lock(state_dir: Path) -> Iterator[None]:
    """Hold `state_dir/tead.lock`; UsageError if another daemon holds it."""
    private_dir(state_dir)
    path = state_dir / "tead.lock"
    private_file(path)
    handle: IO[str] = open(path, "a+")  # noqa: SIM115 - held for the daemon's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        raise UsageError(
            f"another tead daemon (pid {owner}) is using {state_dir}; stop it or use "
            "another --state-dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    try:
        os.write(handle.fileno(), str(os.getpid()).encode())
    except OSError as exc:  # a full disk: the lock holds all the same
        log.warning("cannot write the pid into %s: %s", path, exc)
    try:
        yield
    finally:
        handle.close()


def private_dir(state_dir: Path) -> None:
    """Create `state_dir` 0700; an existing one that others may enter is tightened to its
    owner's bits, with a warning (the run history holds inputs and states)."""
    created = not state_dir.exists()
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    mode = stat.S_IMODE(state_dir.stat().st_mode)
    wanted = 0o700 if created else mode & 0o700
    if mode == wanted:
        return
    try:
        os.chmod(state_dir, wanted)
    except OSError as exc:
        log.warning(
            "state folder %s is mode %04o and cannot be made private: %s", state_dir, mode, exc
        )
        return
    if not created:
        log.warning("state folder %s was mode %04o; made it %04o", state_dir, mode, wanted)


@contextlib.contextmanager
def listening_socket(host: str, port: int) -> Iterator[socket.socket]:
    """The API's socket, bound before anything starts: a port in use is a clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says so (else Nagle adds ~40 ms to every small response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise UsageError(f"cannot listen on {host}:{port}: {reason}") from None
    with sock:
        yield sock


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
            self.store = Store(config.state_dir / "tead.db")
            try:
                return await self._serve(sock)
            finally:
                self.store.close()

    async def _serve(self, sock: socket.socket) -> int:
        config = self.config
        self.breakers = BreakerRegistry(self.store)
        for snapshot in self.breakers.states().values():
            self.metrics.breaker(snapshot.name, snapshot.state, moved=False)
        self.executors = Executors()
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
                    breakers=self.breakers,
                    executors=self.executors,
                    max_concurrent=config.max_concurrent_runs,
                    retention=config.retention_runs,
                    spawn=tasks.create_task,
                    max_state_bytes=config.max_state_bytes,
                    stop_grace_s=config.stop_grace,
                )
                self.scheduler = Scheduler(
                    store=self.store,
                    metrics=self.metrics,
                    fire=_logged(self._fire),
                    lookup=self.registry.get,
                    catchup_limit=config.catchup_limit,
                )
                self.watcher = FolderWatcher(
                    self.registry.folder,
                    extra_roots=self._trigger_roots,
                    on_changes=_logged(self._on_file_changes),
                    on_rescan=_logged(self.rescan),
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
            self.executors.close()
        log.info("stopped")
        return 0

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
            return self.registry.commit(loaded)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` as a task of the daemon; its exception is logged, not fatal."""
        assert self._tasks is not None
        task = self._tasks.create_task(_logged_async(work))
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
            changes = await in_thread(_with_new_folders_contents, changes)
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
            if matched:
                self.runs.submit(entry, {"kind": "watch", "changes": matched}, seen_at=seen_at)

    def _fire(self, entry: WorkflowEntry, trigger: dict[str, Any], mark: Mark) -> None:
        if self.runs.accepting:
            self.runs.submit(entry, trigger, mark=mark)
        else:
            self.store.set_last_fire(*mark)

    def describe(self, entry: WorkflowEntry) -> dict[str, Any]:
        """A workflow file as the API lists it."""
        spec = entry.workflow.spec if entry.workflow else None
        triggers = (
            spec.on.model_dump(mode="json", exclude_defaults=False) if spec and spec.on else {}
        )
        if triggers.get("schedule") and entry.workflow is not None:
            upcoming = self.scheduler.next_fires(entry.workflow)
            for schedule, when in zip(triggers["schedule"], upcoming, strict=True):
                schedule["next_fire"] = when
        return {
            "name": entry.name,
            "path": str(entry.path),
            "valid": entry.valid,
            "error": entry.error,
            "description": spec.description if spec else None,
            "triggers": triggers,
            "content_hash": entry.content_hash,
        }

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
            self.runs.retention = fresh.retention_runs
            self.scheduler.catchup_limit = fresh.catchup_limit
            logging.getLogger().setLevel(fresh.log_level.upper())
            self.config = self.config.model_copy(
                update={
                    "max_concurrent_runs": fresh.max_concurrent_runs,
                    "retention_runs": fresh.retention_runs,
                    "catchup_limit": fresh.catchup_limit,
                    "log_level": fresh.log_level,
                    "token": fresh.token,
                }
            )
            log.info("config reloaded")
        self.rescan()
        self.runs._pump()


def _logged(fn: Callable[P, None]) -> Callable[P, None]:
    """`fn`, but an exception is logged instead of ending the daemon's task group: one bad
    file event or schedule fire must not stop the daemon."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except StorageFullError as exc:  # expected while the disk is full: no traceback
            log.warning("a trigger fired, but no run was created: %s", exc)
        except Exception:
            log.exception("%s failed; the daemon goes on", fn.__name__)

    return call


def _logged_async(work: Coroutine[Any, Any, None]) -> Coroutine[Any, Any, None]:
    """`work`, but an exception is logged instead of ending the daemon's task group."""

    async def run() -> None:
        try:
            await work
        except Exception:
            log.exception("%s failed; the daemon goes on", getattr(work, "__name__", "work"))

    return run()


async def in_thread(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """`fn(*args)` in a new daemon thread, awaited. Unlike `asyncio.to_thread`, a call
    that never returns (a `uses:` module whose import hangs) cannot hold up the exit."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[R] = loop.create_future()

    def settle(result: R | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        interval = sys.getswitchinterval()
        shorten = interval > LOADER_SWITCH_S  # else another loader thread has shortened it
        if shorten:
            sys.setswitchinterval(LOADER_SWITCH_S)  # the loop gets the GIL sooner
        try:
            result, error = fn(*args, **kwargs), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        finally:
            if shorten:
                sys.setswitchinterval(interval)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=work, name=f"tead-{fn.__name__}", daemon=True).start()
    return await done


def _with_new_folders_contents(changes: FileChanges, *, limit: int = 10_000) -> FileChanges:
    """Add the files of folders that were just created: inotify cannot watch a new folder
    before it exists, so files written into it at once would go unseen."""
    found: FileChanges = []
    for path, event in changes:
        if event == "added" and os.path.isdir(path):
            for root, _, names in os.walk(path):
                found += [(os.path.join(root, n), "added") for n in names]
                if len(found) >= limit:
                    break
    return sorted(set(changes) | set(found)) if found else changes
