"""`limits:` and `env:` in workflow files: sizes, durations, names; bad values get one line
naming the key and where it is (through the real `tead validate`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tead.spec.models import Limits, WorkflowSpec
from tead.spec.units import parse_size

NODES = "nodes:\n  - name: a\n"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512M", 512 * 1024**2),
        ("2G", 2 * 1024**3),
        ("1.5g", int(1.5 * 1024**3)),
        ("64KiB", 64 * 1024),
        ("10MB", 10 * 1024**2),
        ("4096", 4096),
        (1000, 1000),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("bad", ["lots", "-1G", "0", "1X", True, None, "1e9", 0.5])
def test_bad_sizes_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(bad)


def test_limits_and_env_parse() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "limits": {"memory": "2G", "cpu_time": "10m", "open_files": 1024},
            "env": {"LOG_LEVEL": "info"},
            "nodes": [{"name": "a"}],
        }
    )
    assert spec.limits == Limits(memory=2 * 1024**3, cpu_time=600.0, open_files=1024)
    assert spec.env == {"LOG_LEVEL": "info"}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("limits: {memory: lots}", "wf.yaml:1:18: limits.memory: invalid size"),
        ("limits: {cpu_time: forever}", "wf.yaml:1:20: limits.cpu_time: invalid duration"),
        ("limits: {open_files: 3}", "wf.yaml:1:22: limits.open_files: Input should be greater"),
        ("limits: {disk: 1G}", "wf.yaml:1:10: unknown key 'disk'"),
        ("env: {LOG_LEVEL: 3}", "wf.yaml:1:18: env.LOG_LEVEL: Input should be a valid string"),
        ("limits: {memory: 1}", "wf.yaml:1:18: limits.memory: Input should be greater than"),
        ("limits: {memory: 9999999T}", "wf.yaml:1:18: limits.memory: Input should be less than"),
        ("limits: {cpu_time: 1e30}", "wf.yaml:1:20: limits.cpu_time: Input should be less than"),
        (
            'env: {A: "x\\0y"}',
            "wf.yaml:1:6: env: an environment variable's value cannot hold a NUL",
        ),
        ("env: {'bad name': x}", "wf.yaml:1:6: env: an environment variable's name is letters"),
    ],
)
def test_bad_limits_and_env_get_one_line(
    header: str,
    message: str,
    tead_cli: Callable[..., object],
    write_workflow: Callable[..., Path],
) -> None:
    write_workflow(header + "\n" + NODES)
    proc = tead_cli("validate", "wf.yaml")
    assert proc.returncode == 2, proc  # type: ignore[attr-defined]
    err = proc.stderr  # type: ignore[attr-defined]
    assert message in err, err
    assert "Traceback" not in err
