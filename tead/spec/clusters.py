"""Where the `remote` and `dask` strategies run branches: `settings.parallel.remote`
(SSH hosts) and `settings.parallel.dask` (a Dask cluster's scheduler)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, PositiveInt

from tead.spec.base import Model
from tead.spec.units import Duration

_HOST = re.compile(r"^(?:[A-Za-z0-9_.\-]+@)?[A-Za-z0-9_.\-]+(?::\d{1,5})?$")


def _check_host(host: str) -> str:
    if not _HOST.match(host):
        raise ValueError(f"invalid host {host!r}: use host, user@host or user@host:port")
    return host


class EnvVarsSpec(Model):
    include: list[str] = []
    exclude_patterns: list[str] = []


HostName = Annotated[str, AfterValidator(_check_host)]


class RemoteHostSpec(Model):
    """A host with its own number of branch slots (default: the host's CPU count)."""

    host: HostName
    slots: PositiveInt | None = None


class RemoteSpec(Model):
    """`settings.parallel.remote`: SSH hosts, each running one warm tead worker."""

    hosts: list[HostName | RemoteHostSpec] = Field(min_length=1)
    known_hosts: Annotated[str, Field(min_length=1)]  # required: never trust on first use
    identity: Annotated[str, Field(min_length=1)] | None = None  # default: the SSH agent
    python: Annotated[str, Field(min_length=1, pattern=r"^[^\s\x00]+$")] = "python3"
    workdir: Annotated[str, Field(min_length=1, pattern=r"^/[^\x00]*$")] = "/tmp/tead-jobs"
    cleanup: bool = True
    connect_timeout: Duration = 10.0
    keepalive: Duration = 5.0
    env_vars: EnvVarsSpec = EnvVarsSpec()
    #: failures in a row (a host unreachable, its connection dropped) that open its breaker
    host_failure_threshold: PositiveInt = 1


_DASK_ADDRESS = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")


def _check_dask_address(address: str) -> str:
    if address != "local" and not _DASK_ADDRESS.match(address):
        raise ValueError(
            "invalid dask address: use a scheduler address such as "
            "tcp://host:8786, or `local` for a LocalCluster that tead starts"
        )
    return address


class DaskSpec(Model):
    """`dask:` of `settings.parallel` (strategy: dask): the cluster's scheduler."""

    address: Annotated[str, AfterValidator(_check_dask_address)]
    connect_timeout: Duration = 10.0
