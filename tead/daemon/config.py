"""The daemon's configuration: embedded defaults < config file < TEAD_* environment < flags.

Every key can come from each layer: `max_concurrent_runs` in the file is
`TEAD_MAX_CONCURRENT_RUNS` in the environment. Relative paths in a config file are
relative to the file's folder; elsewhere, to the working directory.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from tead.errors import Problem, UsageError, WorkflowError
from tead.graph.loader import read_workflow_text, validation_problems
from tead.spec.models import Limits
from tead.spec.units import Duration
from tead.spec.yamlfile import parse_yaml

DEFAULT_PORT = 8421


class DaemonConfig(BaseModel):
    """Settings of `tead serve` (and the `--url` of the client commands)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workflows: Path = Path("workflows")
    state_dir: Path = Path(".tead")
    listen: Annotated[str, Field(pattern=r"^(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):\d{1,5}$")] = (
        f"127.0.0.1:{DEFAULT_PORT}"
    )
    token: str | None = None
    url: str | None = None
    max_concurrent_runs: PositiveInt = 4
    shutdown_grace: Duration = 30.0
    rescan_interval: Duration = 10.0
    retention_runs: PositiveInt = 10_000
    catchup_limit: PositiveInt = 100
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    metrics_public: bool = False
    max_request_bytes: PositiveInt = 1024 * 1024
    request_timeout: Duration = 10.0
    max_state_bytes: PositiveInt = 16 * 1024 * 1024
    # of each run's captured output (stdout, stderr, logging); the rest is cut with a marker
    max_log_bytes: PositiveInt = 16 * 1024 * 1024
    # how long an ended (cancelled, timed-out) run's threads may hold its concurrency group
    stop_grace: Duration = 30.0
    strict_permissions: bool = True
    # process: each run in a worker process of its own; thread: in the daemon's process
    isolation: Literal["process", "thread"] = "process"
    # the daemon's environment variables that runs see (glob patterns), besides `env:`
    pass_env: tuple[str, ...] = (
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "LC_*",
        "TZ",
        "TMPDIR",
    )
    limits: Limits = Limits()  # default rlimits of each run (a workflow's `limits:` wins)
    # record each run's completed steps, so that a failed run can be resumed
    journal: bool = True

    @field_validator("pass_env", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        """TEAD_PASS_ENV="PATH,HOME,LC_*" (commas or spaces) in the environment."""
        return value.replace(",", " ").split() if isinstance(value, str) else value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def loopback(self) -> bool:
        """Whether the API listens on this machine only (then no token is needed)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def client_url(self) -> str:
        """Where the client commands find the daemon."""
        if self.url:
            return self.url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        if host == "[::]":
            host = "[::1]"
        return f"http://{host}:{self.port}"


def load_config(
    file: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> DaemonConfig:
    """Defaults, then `file` (or $TEAD_CONFIG), then TEAD_* variables, then `overrides`."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    file = file or env.get("TEAD_CONFIG")
    if file:
        values.update(_read_file(Path(file)))
    for key in DaemonConfig.model_fields:
        if (value := env.get(f"TEAD_{key.upper()}")) is not None:
            values[key] = value
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return DaemonConfig.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"config: {key}: {first['msg']}") from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        doc = parse_yaml(read_workflow_text(path), str(path))
    except WorkflowError as exc:
        raise UsageError(f"config {exc.problems[0]}") from None
    if doc.data is None:
        return {}
    if not isinstance(doc.data, dict):
        raise UsageError(f"config {Problem('expected a mapping of settings', doc.where(()))}")
    try:
        checked = DaemonConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise UsageError(f"config {validation_problems(exc, doc, model=DaemonConfig)[0]}") from None
    values = {key: getattr(checked, key) for key in checked.model_fields_set}
    for key in ("workflows", "state_dir"):
        if key in values and not values[key].is_absolute():
            values[key] = path.resolve().parent / values[key]
    return values
