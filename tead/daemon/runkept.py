"""The executors a run worker keeps across the runs it serves: the remote strategy's.

A run worker serves one workflow version, for up to `MAX_RUNS_PER_WORKER` runs. Every run
gets executors of its own, closed at its end (process pools, thread executors: a run that
leaves processes or threads behind is not clean, and its worker serves no other run),
except the remote executor, which is lent to each run and kept: its SSH connections and
the warm workers on the hosts serve the next runs too, instead of each run connecting
anew (seconds for a few hosts). It dies with the worker: the daemon kills the worker's
process group when it recycles the worker, or when a run is cancelled or times out, and
the hosts' workers, seeing their connection close, kill the branches they run (and, with
`cleanup`, remove what they created).

The remote executor holds asyncssh's modules, which a worker must not drop between runs
(`runprocess.Baseline.restore` removes the modules a run imported): they are imported
before the worker's baseline is taken, when the workflow's text names the remote
strategy (the word `remote`); a run of a workflow whose file does not gets a remote
executor of its own if it needs one, closed with the run, as the other strategies.
"""

from __future__ import annotations

import re
import threading

from tead.executors.registry import Executors
from tead.executors.remote.executor import RemoteExecutor
from tead.executors.remote.hosts import preload_ssh

#: the word `remote` in a workflow's text (`strategy: remote`, a `remote:` block)
NAMES_REMOTE = re.compile(r"(?<![\w-])remote(?![\w-])")


class KeptExecutors:
    """What one run worker keeps across its runs (see the module)."""

    def __init__(self, workflow_text: str) -> None:
        self._remote: RemoteExecutor | None = None
        if NAMES_REMOTE.search(workflow_text):
            try:
                preload_ssh()  # before the worker's baseline: kept across its runs
            except ImportError:  # each run fails at its remote fan-out, saying why
                return
            self._remote = RemoteExecutor()

    def executors(self) -> Executors:
        """A run's executors: its own, but the kept ones lent to it."""
        return Executors(lent={"remote": self._remote} if self._remote is not None else None)

    def threads(self) -> list[threading.Thread]:
        """The kept executors' threads (a run that left only these left nothing)."""
        return self._remote.threads() if self._remote is not None else []

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()
