"""CancelToken: what is done `unless_cancelled` never happens after `cancel()` returns."""

from __future__ import annotations

import threading

from tead.parallel.cancel import CancelToken


def test_cancel_waits_for_an_action_already_under_way() -> None:
    """A branch thread emitting an event as its attempt is given up: `cancel()` returns
    only once that emit is done, so the event cannot land after, e.g., run_finished."""
    token = CancelToken()
    inside, release, cancelled = threading.Event(), threading.Event(), threading.Event()
    seen: list[str] = []

    def slow_emit(event: str) -> None:
        inside.set()
        release.wait(10)
        seen.append(event)

    emitter = threading.Thread(target=token.unless_cancelled, args=(slow_emit, "node_started"))
    emitter.start()
    assert inside.wait(10)
    canceller = threading.Thread(target=lambda: (token.cancel("abandoned"), cancelled.set()))
    canceller.start()
    assert not cancelled.wait(0.2)  # held up by the emit under way
    release.set()
    assert cancelled.wait(10)
    assert seen == ["node_started"]  # done before cancel() returned
    token.unless_cancelled(seen.append, "node_finished")
    assert seen == ["node_started"]  # nothing after
    emitter.join(10)
    canceller.join(10)
