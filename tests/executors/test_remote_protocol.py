"""The remote protocol's report encoding: log lines travel with a branch's report, bounded."""

from __future__ import annotations

import pytest

from tead.engine.seam import BranchReport
from tead.executors.remote.protocol import (
    ProtocolError,
    bounded_logs,
    report_from_json,
    report_to_json,
)
from tead.parallel.config import ParallelFlowResult


def test_a_reports_log_lines_make_the_round_trip() -> None:
    lines = ((1.5, "work", "work[0]", "stdout", "hi\nthere"), (2.0, None, "", "log", "INFO x"))
    report = BranchReport(ParallelFlowResult(branch="work[0]", success=True), logs=lines)
    assert report_from_json(report_to_json(report)).logs == lines


def test_log_lines_past_the_bound_are_cut_with_a_line_saying_so() -> None:
    lines = tuple((1.0, "n", "b[0]", "stdout", "x" * 100) for _ in range(10))
    kept = bounded_logs(lines, limit=500)
    assert kept[:3] == lines[:3]  # 3 x 140 = 420; the 4th is cut after 40 characters
    assert kept[3] == (1.0, "n", "b[0]", "stdout", "x" * 40)
    assert kept[4][3] == "stderr" and "sends back at most 500 characters" in kept[4][4]
    assert len(kept) == 5
    assert bounded_logs(lines, limit=10_000) == lines


def test_a_bad_log_line_is_a_protocol_error() -> None:
    report = report_to_json(BranchReport(ParallelFlowResult(branch="b", success=True)))
    report["logs"] = [[1.0, "n", "b", "evil-stream", "x"]]
    with pytest.raises(ProtocolError):
        report_from_json(report)
