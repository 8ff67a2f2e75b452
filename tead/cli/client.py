"""The client commands: talk to a running daemon over HTTP, print tables or JSON."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from tead.errors import TeadError, UsageError
from tead.printable import escape_controls


class ClientError(TeadError):
    """The daemon answered with an error, or could not be reached."""


class Client:
    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 30.0) -> None:
        # As UTF-8 bytes: httpx would encode a str as ASCII, and fail on any other token.
        headers = {b"Authorization": f"Bearer {token}".encode()} if token else {}
        self.url = url.rstrip("/")
        # Only the commands that talk to a daemon need httpx: `tead run` starts without it.
        import httpx  # deferred: ~0.12 s of imports that only the client commands need

        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)
        self._http_error = self.transport_errors = httpx.HTTPError

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except self._http_error as exc:
            raise ClientError(f"cannot reach the daemon at {self.url}: {exc}") from None
        return self.check(response)

    def check(self, response: Any) -> Any:
        """The body of a (read) response; the daemon's error as a ClientError or, for
        404, a UsageError."""
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text.strip() or response.reason_phrase}
        if response.status_code == 404:
            raise UsageError(body.get("error", "not found"))
        if response.status_code >= 400:
            error = ClientError(
                f"{body.get('error', response.reason_phrase)} (HTTP {response.status_code})"
            )
            error.exit_code = 2 if response.status_code in (400, 401, 422) else 1
            raise error
        return body


def path_part(value: str, what: str) -> str:
    """`value` (an id or a name) as one segment of a URL path: quoted, so that `/`, `?`,
    `#` or `..` stay part of it; a UsageError if it is empty or holds a `/` (which no id
    or name holds: the daemon's server would take an encoded one for a separator)."""
    if not value:
        raise UsageError(f"the {what} is empty")
    if "/" in value:
        raise UsageError(f"{what} {value!r}: no {what} holds a '/'")
    if value in (".", ".."):  # a dot segment would be removed from the path, not sent
        return value.replace(".", "%2E")
    return quote(value, safe="")


def print_table(rows: list[dict[str, Any]], columns: list[str], *, empty: str) -> None:
    """A table: rich on a terminal, tab-separated with a header line otherwise."""
    if not rows:
        print(empty, file=sys.stderr)
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    if sys.stdout.isatty():
        table = Table(box=None, header_style="bold")
        for column in columns:  # an id is never cut: a column folds instead
            table.add_column(column, overflow="fold", no_wrap=column == "id")
        for line in cells:
            table.add_row(*line)
        Console().print(table)
        return
    print("\t".join(columns))
    for line in cells:
        print("\t".join(line))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return escape_controls(str(value).replace("\t", " ").replace("\n", " "))


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def trigger_summary(triggers: dict[str, Any]) -> str:
    parts = []
    for schedule in triggers.get("schedule") or []:
        parts.append(
            f"cron {schedule['cron']}"
            if schedule.get("cron")
            else f"every {schedule.get('every')}s"
        )
    if triggers.get("watch"):
        parts.append("watch " + ",".join(triggers["watch"]["paths"]))
    if triggers.get("workflow_run"):
        parts.append("after " + ",".join(triggers["workflow_run"]["workflows"]))
    if triggers.get("dispatch") is not None:
        parts.append("dispatch")
    return "; ".join(parts) or "-"


def next_fire(triggers: dict[str, Any]) -> str | None:
    """The earliest `next_fire` of a workflow's schedules, as the API wrote it."""
    found = [s["next_fire"] for s in triggers.get("schedule") or [] if s.get("next_fire")]
    return min(found, key=datetime.fromisoformat, default=None)
