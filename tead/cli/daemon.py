"""`tead serve` and the commands that talk to a running daemon."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import sys
import time
from typing import Any

from tead.cli.client import (
    Client,
    next_fire,
    path_part,
    print_json,
    print_table,
    trigger_summary,
)
from tead.cli.inputs import read_input
from tead.cli.runlogs import add_logs_command, show_run
from tead.daemon.config import DaemonConfig, load_config
from tead.errors import UsageError


def add_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    serve = commands.add_parser("serve", parents=[common], help="run the daemon")
    serve.add_argument("--config", help="config file (YAML); default $TEAD_CONFIG")
    serve.add_argument("--workflows", help="workflow folder (default ./workflows)")
    serve.add_argument("--state-dir", help="state folder (default ./.tead)")
    serve.add_argument("--listen", help="HOST:PORT for the HTTP API (default 127.0.0.1:8421)")
    serve.add_argument("--log-format", choices=["text", "json"], help="log lines as text or JSON")
    serve.set_defaults(handler=_cmd_serve)

    client = _client_options(None)
    # Actions (`runs show`, ...) take the same options, but must not reset what was given
    # before the action's name (`tead runs --url U show ID`): their defaults are SUPPRESS.
    action_client = _client_options(argparse.SUPPRESS)

    workflows = commands.add_parser(
        "workflows", parents=[common, client], help="list the daemon's workflows"
    )
    workflows.set_defaults(handler=_cmd_workflows)
    switches = workflows.add_subparsers(dest="action", parser_class=type(commands._parser_class()))
    for action, text in (("disable", "pause a workflow's triggers"), ("enable", "resume them")):
        switch = switches.add_parser(action, parents=[common, action_client], help=text)
        switch.add_argument("name")
        switch.set_defaults(handler=_cmd_workflow_switch, enabled=action == "enable")

    runs = commands.add_parser("runs", parents=[common, client], help="list runs (newest first)")
    runs.add_argument("--workflow", help="only runs of this workflow")
    runs.add_argument("--status", help="only runs with this status")
    runs.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    runs.set_defaults(handler=_cmd_runs)
    actions = runs.add_subparsers(dest="action", parser_class=type(commands._parser_class()))
    show = actions.add_parser("show", parents=[common, action_client], help="one run in full")
    show.add_argument("id", help="the run's id, or a unique prefix of it")
    show.set_defaults(handler=_cmd_run_show)
    add_logs_command(actions, [common, action_client], _client)
    cancel = actions.add_parser("cancel", parents=[common, action_client], help="cancel a run")
    cancel.add_argument("id")
    cancel.set_defaults(handler=_cmd_run_cancel)
    rerun = actions.add_parser(
        "rerun", parents=[common, action_client], help="run a finished run again"
    )
    rerun.add_argument("id")
    rerun.add_argument(
        "--from-failure", action="store_true", help="resume: completed steps are not run again"
    )
    rerun.set_defaults(handler=_cmd_run_rerun)

    dispatch = commands.add_parser(
        "dispatch", parents=[common, client], help="start a run of a workflow"
    )
    dispatch.add_argument("workflow")
    dispatch.add_argument("--input", "-i", help="inputs: inline JSON, or @file (.json, .yaml)")
    dispatch.add_argument("--wait", action="store_true", help="wait for the run to finish")
    dispatch.set_defaults(handler=_cmd_dispatch)

    breakers = commands.add_parser(
        "breakers", parents=[common, client], help="list circuit breakers"
    )
    breakers.set_defaults(handler=_cmd_breakers)
    breaker_actions = breakers.add_subparsers(
        dest="action", parser_class=type(commands._parser_class())
    )
    reset = breaker_actions.add_parser(
        "reset", parents=[common, action_client], help="close a breaker"
    )
    reset.add_argument("name")
    reset.set_defaults(handler=_cmd_breaker_reset)

    health = commands.add_parser(
        "healthcheck", parents=[common, client], help="exit 0 if the daemon answers /healthz"
    )
    health.add_argument("--timeout", default="3", help="seconds (default 3)")
    health.set_defaults(handler=_cmd_healthcheck)


def _client_options(default: Any) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--url", default=default, help="the daemon's URL (default: config)")
    options.add_argument("--config", default=default, help="config file for the URL and token")
    flag = {} if default is None else {"default": default}
    options.add_argument("--json", action="store_true", help="print JSON for scripts", **flag)
    return options


# --- serve -----------------------------------------------------------------------------------


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _cmd_serve(args: argparse.Namespace) -> int:
    overrides = {
        "workflows": args.workflows,
        "state_dir": args.state_dir,
        "listen": args.listen,
        "log_format": args.log_format,
    }
    config = load_config(args.config, overrides=overrides)
    configure_logging(config.log_format, config.log_level)
    # Only `serve` needs the web stack (uvicorn, FastAPI); every other command starts faster.
    from tead.daemon.app import Daemon  # deferred: ~0.3 s of imports that only serve needs

    daemon = Daemon(config, config_file=args.config, overrides=overrides)
    return asyncio.run(daemon.run())


# --- clients ---------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    config: DaemonConfig = load_config(args.config)
    return Client(args.url or config.client_url, token=config.token or os.environ.get("TEAD_TOKEN"))


def _cmd_workflows(args: argparse.Namespace) -> int:
    found = _client(args).call("GET", "/api/v1/workflows")["workflows"]
    if args.json:
        print_json(found)
        return 0
    rows = [
        {
            "name": w["name"],
            "file": os.path.basename(w["path"]),
            "triggers": trigger_summary(w["triggers"]),
            "next_fire": next_fire(w["triggers"]),
            "status": "ok" if w["valid"] else (w["error"] or "").splitlines()[0],
            "enabled": w["enabled"],
        }
        for w in found
    ]
    columns = ["name", "file", "triggers", "next_fire", "status", "enabled"]
    print_table(rows, columns, empty="no workflows")
    return 0


def _cmd_workflow_switch(args: argparse.Namespace) -> int:
    action = "enable" if args.enabled else "disable"
    found = _client(args).call(
        "POST", f"/api/v1/workflows/{path_part(args.name, 'workflow name')}/{action}"
    )
    if args.json:
        print_json(found)
    else:
        print(f"workflow {found['name']} {action}d")
    return 0


def _run_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "id": r["id"],
            "workflow": r["workflow"],
            "trigger": r["trigger"].get("kind"),
            "status": r["status"],
            "created": r["created_at"],
            "finished": r["finished_at"],
            "error": r["error"],
        }
        for r in runs
    ]


def _cmd_runs(args: argparse.Namespace) -> int:
    params = {"limit": args.limit}
    if args.workflow:
        params["workflow"] = args.workflow
    if args.status:
        params["status"] = args.status
    found = _client(args).call("GET", "/api/v1/runs", params=params)["runs"]
    if args.json:
        print_json(found)
        return 0
    columns = ["id", "workflow", "trigger", "status", "created", "finished", "error"]
    print_table(_run_rows(found), columns, empty="no runs")
    return 0


def _show(run: dict[str, Any], as_json: bool) -> None:
    show_run(run, as_json)


def _cmd_run_show(args: argparse.Namespace) -> int:
    _show(_client(args).call("GET", f"/api/v1/runs/{path_part(args.id, 'run id')}"), args.json)
    return 0


def _cmd_run_cancel(args: argparse.Namespace) -> int:
    run = _client(args).call("POST", f"/api/v1/runs/{path_part(args.id, 'run id')}/cancel")
    if args.json:
        print_json(run)
    else:
        print(f"run {run['id']} {run['status']}")
    return 0


def _cmd_run_rerun(args: argparse.Namespace) -> int:
    body = {"from_failure": args.from_failure}
    run = _client(args).call(
        "POST", f"/api/v1/runs/{path_part(args.id, 'run id')}/rerun", json=body
    )
    if args.json:
        print_json(run)
    else:
        trigger = run.get("trigger") or {}
        key, how = (
            ("resumed_from", "resumed from") if args.from_failure else ("rerun_of", "re-run of")
        )
        print(f"run {run['id']} {run['status']} ({how} {trigger.get(key, args.id)})")
    return 0


def _cmd_dispatch(args: argparse.Namespace) -> int:
    inputs = read_input(args.input) if args.input is not None else {}
    client = _client(args)
    run = client.call(
        "POST",
        f"/api/v1/workflows/{path_part(args.workflow, 'workflow name')}/dispatch",
        json={"inputs": inputs},
    )
    while args.wait and run["status"] in ("queued", "running"):
        time.sleep(0.2)
        run = client.call("GET", f"/api/v1/runs/{path_part(run['id'], 'run id')}")
    if args.json:
        print_json(run)
    elif args.wait:
        _show(run, as_json=False)
    else:
        print(f"run {run['id']} {run['status']}")
    return 0 if run["status"] in ("queued", "running", "succeeded") else 1


def _cmd_breakers(args: argparse.Namespace) -> int:
    found = _client(args).call("GET", "/api/v1/breakers")["breakers"]
    if args.json:
        print_json(found)
        return 0
    print_table(found, ["name", "state", "failure_count", "opened_at"], empty="no breakers")
    return 0


def _cmd_breaker_reset(args: argparse.Namespace) -> int:
    breaker = _client(args).call(
        "POST", f"/api/v1/breakers/{path_part(args.name, 'breaker name')}/reset"
    )
    if args.json:
        print_json(breaker)
    else:
        print(f"breaker {breaker['name']} {breaker['state']}")
    return 0


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    """For container health checks: the daemon found as the client commands find it."""
    try:
        timeout_s = float(args.timeout)
    except ValueError:
        timeout_s = math.nan
    if not 0 < timeout_s < math.inf:
        raise UsageError(f"--timeout: {args.timeout!r} is not a positive number of seconds")
    config: DaemonConfig = load_config(args.config)
    client = Client(args.url or config.client_url, timeout_s=timeout_s)
    body = client.call("GET", "/healthz")
    if args.json:
        print_json(body)
    else:
        print(f"{client.url}/healthz: {body.get('status')}")
    return 0
