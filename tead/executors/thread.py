"""The thread strategy: branches run in a thread pool of the calling process."""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING

from tead.executors.base import ResultCallback
from tead.reliability import ParallelConfig, ParallelFlowResult

if TYPE_CHECKING:
    from tead.engine import BranchTask


class ThreadExecutor:
    """One pool per fan-out, so a branch that fans out again never waits on its own pool."""

    def execute(
        self,
        tasks: Sequence[BranchTask],
        config: ParallelConfig,
        on_result: ResultCallback | None = None,
    ) -> list[ParallelFlowResult]:
        from tead.engine import run_branch

        if not tasks:
            return []
        results: list[ParallelFlowResult | None] = [None] * len(tasks)
        workers = min(config.workers, len(tasks))
        with ThreadPoolExecutor(workers, thread_name_prefix="tead-branch") as pool:
            futures: dict[Future[ParallelFlowResult], int] = {
                pool.submit(contextvars.copy_context().run, run_branch, task): index
                for index, task in enumerate(tasks)
            }
            for future in as_completed(futures):
                index = futures[future]
                results[index] = result = future.result()
                if on_result is not None:
                    on_result(index, result)
        return [r for r in results if r is not None]

    def close(self) -> None:
        """Nothing to release: pools live for one fan-out."""
