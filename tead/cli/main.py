"""The command line: parse, call, and map TeadError to one line on stderr and an exit code.

Exit codes: 0 success, 1 the run or operation failed, 2 bad usage or invalid workflow/input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from tead.cli.cron import add_cron_command
from tead.cli.daemon import add_commands
from tead.cli.inputs import read_input
from tead.cli.progress import LiveProgress, PlainProgress
from tead.cli.stdout import results_only_on_stdout
from tead.engine.events import Event, EventSink
from tead.errors import InputError, NodeError, Problem, TeadError, UsageError, WorkflowError
from tead.graph.compiled import END, START
from tead.graph.loader import explain_workflow, load_workflow
from tead.jsonable import dumps
from tead.spec.models import json_schema
from tead.spec.teamodels import state_json_schema
from tead.spec.triggerdata import check_trigger, dispatch_inputs
from tead.version import __version__
from tead.workflow import Workflow


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line and exit code 2."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tead", description="Run YAML workflows with parallel fan-outs.")
    parser.add_argument("--version", action="version", version=f"tead {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", parents=[common], help="run one workflow file")
    run.add_argument("workflow", help="the workflow file")
    run.add_argument("--input", "-i", help="initial state: inline JSON, or @file (.json, .yaml)")
    run.add_argument("--output", "-o", help="write the final state as JSON to this file")
    run.add_argument("--entry-point", default=START, help="start at this node (default __start__)")
    run.add_argument("--exit-point", default=END, help="stop before this node (default __end__)")
    run.add_argument("--stream", action="store_true", help="print NDJSON events on stdout")
    run.add_argument(
        "--trigger",
        help='fake a trigger: state["trigger"] as the daemon would give it, inline JSON or @file',
    )
    run.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    run.set_defaults(handler=_cmd_run)

    validate = commands.add_parser("validate", parents=[common], help="check workflow files")
    validate.add_argument("workflows", nargs="+", help="workflow files")
    validate.add_argument(
        "--explain",
        action="store_true",
        help="also list every way each file's meaning differs from The Edge Agent's",
    )
    validate.set_defaults(handler=_cmd_validate)

    schema = commands.add_parser("schema", parents=[common], help="print the JSON Schema")
    schema.add_argument(
        "--state",
        metavar="WF",
        help="print the JSON Schema of this workflow's state (from its state_schema) instead",
    )
    schema.set_defaults(handler=_cmd_schema)

    add_cron_command(commands, common)
    add_commands(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except TeadError as exc:
        if args.debug:
            traceback.print_exception(exc.error if isinstance(exc, NodeError) else exc)
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"tead: {line}" if not isinstance(exc, WorkflowError) else line, file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tead: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed early (`tead run --stream | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


# --- run -----------------------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace) -> int:
    graph = load_workflow(args.workflow)
    _print_warnings(graph.warnings)
    state = read_input(args.input) if args.input is not None else {}
    try:  # declared dispatch inputs: defaults filled in, types checked
        state = dispatch_inputs(graph.spec, state, others=True)
    except InputError as exc:
        raise InputError(f"--input: {exc}") from None
    if args.trigger is not None:
        state["trigger"] = check_trigger(read_input(args.trigger, "--trigger"))
    if args.output is not None:
        _check_writable(args.output)
    graph.check_scope(args.entry_point, args.exit_point)
    progress = None
    # What nodes write goes to stderr: stdout is the final state (or the events).
    with results_only_on_stdout() as results:
        if args.stream:
            on_event: EventSink | None = _ndjson_printer(results)
        elif args.quiet:
            on_event = None
        else:
            tty = sys.stderr.isatty()
            progress = LiveProgress(sys.stderr) if tty else PlainProgress(sys.stderr)
            on_event = progress
        try:
            final = Workflow(graph).invoke(
                state, entry_point=args.entry_point, exit_point=args.exit_point, on_event=on_event
            )
        finally:
            if progress is not None:
                progress.close()
    if args.output is not None:
        _write_atomically(args.output, dumps(final, indent=2) + "\n")
    elif not args.stream:
        print(dumps(final, indent=2))
    return 0


def _check_writable(path: str) -> None:
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise UsageError(f"--output: folder {folder} does not exist")
    if Path(path).is_dir():
        raise UsageError(f"--output: {path} is a directory")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--output: cannot write in {folder}")


def _write_atomically(path: str, text: str) -> None:
    """Write via a temp file and rename, keeping an existing file's permissions."""
    target = Path(path)
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, temp = tempfile.mkstemp(dir=target.resolve().parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temp, mode)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _ndjson_printer(out: TextIO) -> EventSink:
    """`--stream`: each event's JSON encoding on a line of its own."""
    lock = threading.Lock()

    def emit(event: Event) -> None:
        line = dumps(event.to_json())
        with lock:
            out.write(line + "\n")
            out.flush()

    return emit


# --- validate, schema ----------------------------------------------------------------------


def _cmd_validate(args: argparse.Namespace) -> int:
    failed = False
    for path in args.workflows:
        if args.explain:
            _explain(path)
        try:
            workflow = load_workflow(path)
        except WorkflowError as exc:
            failed = True
            for problem in exc.problems:
                print(problem, file=sys.stderr)
        else:
            if not args.explain:
                _print_warnings(workflow.warnings)
            count = len(workflow.nodes)
            print(f"{path}: ok ({workflow.name}, {count} node{'s' * (count != 1)})")
    return 2 if failed else 0


def _explain(path: str) -> None:
    """`validate --explain`: one stdout line per difference from TEA (the checks follow)."""
    try:
        differences = explain_workflow(path)
    except WorkflowError:
        return  # unreadable or not YAML: the load reports it
    for problem in differences:
        print(f"{problem.where}: tea: {problem.message}")
    if not differences:
        print(f"{path}: tea: no differences from The Edge Agent's format")


def _print_warnings(warnings: Sequence[Problem]) -> None:
    for warning in warnings:
        print(f"{warning.where}: warning: {warning.message}", file=sys.stderr)


def _cmd_schema(args: argparse.Namespace) -> int:
    if args.state is None:
        print(json.dumps(json_schema(), indent=2))
        return 0
    workflow = load_workflow(args.state)
    if workflow.spec is None or not workflow.spec.state_schema:
        raise UsageError(f"{args.state}: the workflow has no state_schema")
    print(json.dumps(state_json_schema(workflow.name, workflow.spec.state_schema), indent=2))
    return 0
