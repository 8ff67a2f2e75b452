"""Work the daemon runs beside its event loop: callbacks and tasks whose failure is
logged instead of ending the daemon, and calls on threads of their own."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from tead.errors import StorageFullError

P = ParamSpec("P")
R = TypeVar("R")
LOADER_SWITCH_S = 0.001  # while loading, the event loop gets the GIL within 1 ms (not 5 ms)


def logged(fn: Callable[P, None], log: logging.Logger) -> Callable[P, None]:
    """`fn`, but an exception is logged on `log` instead of ending the daemon's task
    group: one bad file event or schedule fire must not stop the daemon."""

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except StorageFullError as exc:  # expected while the disk is full: no traceback
            log.warning("a trigger fired, but no run was created: %s", exc)
        except Exception:
            log.exception("%s failed; the daemon goes on", fn.__name__)

    return call


def logged_async(work: Coroutine[Any, Any, None], log: logging.Logger) -> Coroutine[Any, Any, None]:
    """`work`, but an exception is logged on `log` instead of ending the daemon's task
    group."""

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
