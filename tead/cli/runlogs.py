"""`tead runs logs` and how `tead runs show` presents a run (failure details, nodes,
branches): clients of a running daemon."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from tead.cli.client import Client, ClientError, path_part, print_json
from tead.printable import escape_controls, escape_lines


def add_logs_command(
    actions: Any,
    parents: list[argparse.ArgumentParser],
    handler: Callable[[argparse.Namespace], Client],
) -> None:
    """`tead runs logs ID [--node N] [--follow]`; `handler` makes the client."""
    logs = actions.add_parser("logs", parents=parents, help="a run's captured output")
    logs.add_argument("id", help="the run's id, or a unique prefix of it")
    logs.add_argument("--node", help="only this node's lines")
    logs.add_argument(
        "--follow", "-f", action="store_true", help="stream lines until the run has ended"
    )
    logs.set_defaults(handler=lambda args: _cmd_logs(args, handler(args)))


def _cmd_logs(args: argparse.Namespace, client: Client) -> int:
    params: dict[str, Any] = {"node": args.node} if args.node else {}
    path = f"/api/v1/runs/{path_part(args.id, 'run id')}/logs"
    if not args.follow:
        for entry in client.call("GET", path, params=params):
            _print_line(entry, args.json)
        return 0
    try:
        with client.http.stream(
            "GET", path, params={**params, "follow": "1"}, timeout=None
        ) as response:
            if response.status_code >= 400:
                response.read()
                client.check(response)
            for text in response.iter_lines():
                if text:
                    _print_line(json.loads(text), args.json)
    except client.transport_errors as exc:
        raise ClientError(f"lost the daemon at {client.url}: {exc}") from None
    return 0


def _print_line(entry: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(entry), flush=True)
        return
    where = entry["node"] or "-"
    if entry["branch"]:
        where = f"{where} [{entry['branch']}]"
    text = f"{entry['ts']} {where} {entry['stream']}: {entry['line']}"
    print(escape_controls(text), flush=True)


def show_run(run: dict[str, Any], as_json: bool) -> None:
    """A run in full: its fields, where it failed, its nodes and branches, its state."""
    if as_json:
        print_json(run)
        return
    for key in ("id", "workflow", "status", "created_at", "started_at", "finished_at", "error"):
        _print(f"{key:12} {run.get(key) if run.get(key) is not None else '-'}")
    _print(f"{'trigger':12} {json.dumps(run['trigger'])}")
    failure = run.get("failure")
    if failure:
        _print("failure:")
        place = failure.get("node") or "-"
        if failure.get("branch"):
            place = f"{place} in branch {failure['branch']}"
        _print(f"  {'node':10} {place}")
        _print(f"  {'error':10} {failure.get('error_type')}: {failure.get('message')}")
        if failure.get("traceback"):
            _print("  traceback:")
            for line in failure["traceback"].rstrip("\n").splitlines():
                _print(f"    {line}")
    if run.get("nodes"):
        _print("nodes:")
        for node in run["nodes"]:
            name = f"{node['branch']}/{node['node']}" if node["branch"] else node["node"]
            took = "-" if node["duration_ms"] is None else f"{node['duration_ms']:.1f} ms"
            error = f"  {node['error']}" if node.get("error") else ""
            _print(f"  {name:30} {node['status']:10} {node['started_at']} {took}{error}")
    if run.get("branches"):
        _print("branches:")
        for b in run["branches"]:
            name = f"{b['path']}/{b['branch']}" if b["path"] else b["branch"]
            outcome = "ok" if b["success"] else f"{b['error_type']}: {b['error']}"
            _print(f"  {name:30} {outcome} ({b['timing_ms']:.1f} ms)")
    if run.get("final_state") is not None:
        failed = run.get("status") == "failed"
        _print("state when it failed:" if failed else "final state:")
        _print(json.dumps(run["final_state"], indent=2))


def _print(text: str) -> None:
    print(escape_lines(text))
