"""A connection to a Dask cluster for the dask strategy: the client (and the LocalCluster it
owns for `address: local`), checked at connect (a worker exists, every worker has this
tead), the workflow bundles scattered to it, and a count of the branches Dask runs again
after losing a worker (the scheduler's `remove-worker` events name the tasks it was
running, and those whose results it held, which Dask computes again while a client has
not fetched them): each is logged and told to its run as a `DaskRerun` event (counted in
the daemon's `tead_dask_task_reruns_total`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import pickle
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

from distributed import Client, LocalCluster
from distributed import Future as DaskFuture

from tead.engine.bundle import bundle_of
from tead.engine.events import DaskRerun, Event
from tead.engine.task import BranchTask
from tead.errors import DaskClusterError
from tead.executors.dask.worker import KEPT_BUNDLES, bundle_key, warm
from tead.parallel.config import DaskConfig
from tead.version import __version__

log = logging.getLogger(__name__)

#: a branch running on the cluster, and where its run takes the executor's events
Running = tuple[BranchTask, Callable[[Event], None] | None]


class DaskCluster:
    """A connected client (and the LocalCluster it owns, for `address: local`), the
    bundles scattered to it, and the branches it runs, to count re-runs after a worker
    loss."""

    def __init__(self, config: DaskConfig, local_workers: int) -> None:
        self.local: LocalCluster | None = None
        address = config.address
        timeout = config.connect_timeout_s
        try:
            if address == "local":
                self.local = LocalCluster(
                    n_workers=local_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
                address = self.local.scheduler_address
            self.client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            self._close_local()
            why = "" if str(exc).startswith("Timed out") else f": {exc}"
            raise DaskClusterError(
                f"dask: cannot reach the scheduler at {address} within {timeout:g} s "
                f"(settings.parallel.dask.address){why}"
            ) from None
        self.address = address
        self.lock = threading.Lock()
        # not `lock`, which the client's loop takes: a scatter needs the loop
        self._bundles_lock = threading.Lock()
        # digest -> (its future, its data), most recently used last
        self._bundles: OrderedDict[str, tuple[DaskFuture[Any], bytes]] = OrderedDict()
        self._fan_outs: Counter[str] = Counter()  # digest -> fan-outs using it now
        # dask key -> its branch, from its submission until its result is fetched
        self.running: dict[str, Running] = {}
        self.reruns = 0
        try:
            self._check_workers(timeout)
        except BaseException:
            self.close()
            raise
        self.client.subscribe_topic("all", self._cluster_event)

    def _check_workers(self, timeout: float) -> None:
        """DaskClusterError unless the cluster has a worker (within `timeout`) and every
        worker has this version of tead (tasks check it again, for workers added later)."""
        try:
            self.client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise DaskClusterError(
                f"dask: the cluster at {self.address} has no worker (waited {timeout:g} s)"
            ) from None
        found = self.client.run(importlib.metadata.version, "tead", on_error="return")
        for worker, version in sorted(found.items()):
            if isinstance(version, importlib.metadata.PackageNotFoundError):
                raise DaskClusterError(
                    f"dask: worker {worker} has no tead installed (its workers need tead "
                    f"{__version__}: pip install 'tead[dask]=={__version__}')"
                )
            if isinstance(version, BaseException) or version != __version__:
                raise DaskClusterError(
                    f"dask: worker {worker} has tead {version}, this is tead {__version__}: "
                    "install the same version on the workers"
                )
        self.client.run(warm)  # children for the first branches start now, not in their clocks

    def bundle(self, task: BranchTask) -> str:
        """The digest of the workflow's bundle, scattered to the cluster under
        `bundle_key(digest)` (once per digest, again if the workers that held it were
        lost: a client may be kept for many runs). Workers fetch it from there. The
        caller's fan-out uses it until it says `done_with(digest)`."""
        made = bundle_of(task.workflow)
        with self._bundles_lock:
            found = self._bundles.get(made.digest)
            if found is None or found[0].status != "finished":  # or lost with its workers
                data = pickle.dumps(made.to_json(), protocol=pickle.HIGHEST_PROTOCOL)
                self._scatter(made.digest, data)
            self._bundles.move_to_end(made.digest)
            self._fan_outs[made.digest] += 1
            return made.digest

    def done_with(self, digest: str) -> None:
        """A fan-out no longer uses this bundle. The cluster keeps the `KEPT_BUNDLES` most
        recently used (and any a fan-out uses): a client kept for a long time, running
        many versions of workflows, does not pile them up in the cluster's memory."""
        with self._bundles_lock:
            self._fan_outs[digest] -= 1
            if self._fan_outs[digest] <= 0:
                del self._fan_outs[digest]
            unused = [d for d in self._bundles if d not in self._fan_outs]
            for old in unused[: max(0, len(self._bundles) - KEPT_BUNDLES)]:
                future, _ = self._bundles.pop(old)
                future.release()

    def _scatter(self, digest: str, data: bytes) -> None:
        """Scatter a bundle (under `self._bundles_lock`)."""
        # not broadcast: with distributed 2026.8 that broke the scheduler's messages
        key = bundle_key(digest)
        self._bundles[digest] = (self.client.scatter({key: data})[key], data)

    def _scatter_lost(self, keys: set[str]) -> None:
        """Scatter again the bundles among `keys` (lost with a worker): the branches it
        held run again on workers that may not have fetched them yet."""
        with self._bundles_lock:
            for digest, (_, data) in list(self._bundles.items()):
                if bundle_key(digest) in keys and self.usable():
                    with contextlib.suppress(Exception):  # the next fan-out tries again
                        self._scatter(digest, data)

    def _cluster_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """A worker left with branches of ours: Dask runs them again elsewhere."""
        _, message = event
        if not isinstance(message, dict) or message.get("action") != "remove-worker":
            return
        lost = {str(key) for key in message.get("lost-scattered-tasks") or ()}
        if any(key.startswith(bundle_key("")) for key in lost):  # not in the client's loop
            threading.Thread(target=self._scatter_lost, args=(lost,), daemon=True).start()
        held = [
            *(message.get("processing-tasks") or ()),
            *(message.get("lost-computed-tasks") or ()),
        ]
        for key in held:
            with self.lock:
                running = self.running.get(str(key))
                if running is None:
                    continue
                self.reruns += 1
            task, emit = running
            worker = str(message.get("worker"))
            log.warning(
                "branch %s: dask worker %s was lost while it held this branch; "
                "Dask runs it again on another worker",
                task.branch,
                worker,
            )
            if emit is not None:
                with contextlib.suppress(Exception):  # a sink's trouble is not the client's
                    emit(DaskRerun(path=task.path, worker=worker))

    def usable(self) -> bool:
        """Whether the client is connected, or connecting again (not closed)."""
        return self.client.status not in ("closing", "closed")

    def close(self) -> None:
        try:
            with contextlib.suppress(Exception):  # else the scheduler tells a closed client
                self.client.unsubscribe_topic("all")
            self.client.close()
        finally:
            self._close_local()

    def _close_local(self) -> None:
        if self.local is not None:
            self.local.close()
            self.local = None
