"""How a branch attempt ended, as a launcher reports it: the supervisor decides what to do
from these alone, so it knows nothing of threads, pools or hosts.

    Finished(result)  the branch ran and returned its result (a success or its own failure)
    Crashed(detail)   what ran it died (a worker process, a host): the branch fails with
                      WorkerCrashedError(detail), an attempt like any failure
    Lost(detail)      it ended through no fault of its own (its worker was killed to stop a
                      sibling, the pool closed under it): it runs again, the attempt does
                      not count and a half-open breaker gets its probe back
    Denied(result)    the supervisor's gate turned it away (breaker open, fail_fast, a
                      cancelled run): `result` is the branch's final result
    TimedOut()        the executor itself enforced the deadline (a remote worker's own
                      timer): the same as the supervisor's timeout

An attempt whose future raises instead is a failure of the launcher (e.g. the state could
not be sent): the branch fails with that error. A cancelled attempt counts as Lost.
"""

from __future__ import annotations

from dataclasses import dataclass

from tead.parallel.config import ParallelFlowResult


@dataclass(frozen=True, slots=True, kw_only=True)
class Finished:
    """The branch ran: `result` is its success or its own failure."""

    result: ParallelFlowResult


@dataclass(frozen=True, slots=True, kw_only=True)
class Crashed:
    """What ran the branch died; `detail` says how (it becomes the error message)."""

    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Lost:
    """The attempt ended through no fault of its own: run it again, uncounted."""

    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Denied:
    """Turned away at the gate before it started; `result` is the branch's final result."""

    result: ParallelFlowResult


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOut:
    """The executor stopped the attempt at its deadline (as a supervisor timeout would)."""


Outcome = Finished | Crashed | Lost | Denied | TimedOut
