"""Fixtures of the strategies' tests: a real Dask cluster and real SSH hosts, each shared by
the tests of one module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dask_fixture import DaskProcesses, dask_cluster_in
from tests.executors.sshd import SshLab


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskProcesses]:
    """A scheduler and two workers on loopback, shared by a module's tests."""
    with dask_cluster_in(tmp_path_factory.mktemp("dask-cluster")) as cluster:
        yield cluster


def _three_hosts() -> Iterator[SshLab]:
    lab = SshLab(3)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def lab() -> Iterator[SshLab]:
    """Three hosts shared by a module's tests that do not harm them."""
    yield from _three_hosts()


@pytest.fixture
def own_lab() -> Iterator[SshLab]:
    """Three hosts for a test that kills or freezes one."""
    yield from _three_hosts()
