"""The HTTP API (CONTRACT §3). Errors become `{"error": "..."}` with a fitting status here,
in one place."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from tead.daemon.apiguard import Guard, storable_problem
from tead.daemon.apilogs import add_log_routes, resolve_run_id
from tead.daemon.config import DaemonConfig
from tead.daemon.failure import live_nodes
from tead.daemon.metrics import Metrics
from tead.daemon.records import RunRecord, RunStatus, iso_utc
from tead.daemon.registry import WorkflowEntry, WorkflowRegistry
from tead.daemon.runs import RunManager
from tead.daemon.store import RunJson, Store
from tead.daemon.web import add_web_routes
from tead.errors import Conflict, InputError, NotFound, StorageFullError
from tead.jsonable import load_json
from tead.parallel.breaker import BreakerRegistry
from tead.spec.triggerdata import dispatch_inputs
from tead.version import __version__


class DaemonView(Protocol):
    """What the API reads and calls on the daemon (`tead.daemon.app.Daemon`), looked up
    at each request: the config changes on reload, and the run manager and store exist
    only once the daemon serves."""

    @property
    def config(self) -> DaemonConfig: ...

    @property
    def ready(self) -> bool: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def registry(self) -> WorkflowRegistry: ...

    @property
    def runs(self) -> RunManager: ...

    @property
    def store(self) -> Store: ...

    @property
    def breakers(self) -> BreakerRegistry: ...

    def describe(self, entry: WorkflowEntry) -> dict[str, Any]:
        """A workflow file as the API lists it."""
        ...

    def reset_breaker(self, name: str) -> None:
        """Close the circuit breaker `name`; KeyError if there is none."""
        ...

    @property
    def disabled(self) -> set[str]: ...

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable a workflow's triggers (persisted)."""
        ...

    def rerun(self, record: RunRecord, *, from_failure: bool = False) -> RunRecord:
        """Queue a new run of the workflow version `record` ran, with its trigger and
        inputs (`from_failure`: resuming it); Conflict if that cannot be done."""
        ...


class DispatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, Any] = {}


class RerunBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # strict: "yes" or 1 is no bool
    from_failure: bool = False


class AsciiJSONResponse(JSONResponse):
    """JSON escaped to ASCII: a state may hold lone surrogates (from non-UTF-8 file
    names), which cannot be encoded as UTF-8."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


def run_response(data: dict[str, Any], status_code: int = 200) -> Response:
    """A run as JSON, encoded without pydantic (whose depth limit is lower than what a run
    may hold); a part that cannot be encoded is left out and named under `omitted`, so
    that a stored run can always be read back."""
    try:
        body = _encode(data)
    except (ValueError, TypeError, RecursionError):
        omitted = {}
        for key in ("trigger", "inputs", "final_state", "branches"):
            try:
                _encode(data.get(key))
            except (ValueError, TypeError, RecursionError) as exc:
                reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
                data = {**data, key: None}
                omitted[key] = f"cannot be shown as JSON: {reason}"
        body = _encode({**data, "omitted": omitted})
    return Response(body, status_code=status_code, media_type="application/json")


# What the store may hold that strict JSON has not: NaN and Infinity outside strings.
BARE_CONSTANT = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|(NaN|-?Infinity)')


def not_strict(text: bytes) -> bool:
    """Whether JSON `text` holds NaN or Infinity outside strings (looked for a match at a
    time, so that the event loop gets the GIL between them, and only if they occur)."""
    if b"NaN" not in text and b"Infinity" not in text:
        return False
    return any(match.group(1) for match in BARE_CONSTANT.finditer(text))


def stored_run_response(stored: RunJson, status_code: int = 200) -> Response:
    """A stored run as JSON, its stored JSON texts spliced in without being decoded; only
    a text that holds NaN or Infinity (which the store allows) is decoded and encoded
    again, and left out and named under `omitted` if it is not strict JSON (as by
    `run_response`)."""
    parts, omitted = [], {}
    for key, value in stored.record.to_dict().items():
        text = stored.texts.get(key)
        if text is None:
            text = _encode(value)
        elif not_strict(text):
            try:
                text = _encode(json.loads(text))
            except (ValueError, TypeError, RecursionError) as exc:
                reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
                text, omitted[key] = b"null", f"cannot be shown as JSON: {reason}"
        parts.append(_encode(key) + b":" + text)
    if omitted:
        parts.append(b'"omitted":' + _encode(omitted))
    body = b"{" + b",".join(parts) + b"}"
    return Response(body, status_code=status_code, media_type="application/json")


def _encode(value: Any) -> bytes:
    # Strict JSON: NaN and Infinity (which a node's state may hold) are not JSON.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode()


class JsonRequest(Request):
    """A request whose JSON body is read by `load_json` (errors name the problem and
    its place)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = load_json(await self.body())
        return self._json


class JsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            return await handler(JsonRequest(request.scope, request.receive))

        return route


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def build_app(daemon: DaemonView) -> FastAPI:
    app = FastAPIOffline(  # /docs with Swagger UI's files served from /docs/static, no CDN
        docs_url="/docs",
        redoc_url=None,
        static_url="/docs/static",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from elsewhere
        title="tead",
        version=__version__,
        default_response_class=AsciiJSONResponse,
    )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return AsciiJSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(StorageFullError)
    async def storage_full(request: Request, exc: StorageFullError) -> JSONResponse:
        return AsciiJSONResponse({"error": str(exc)}, status_code=503)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return AsciiJSONResponse(
            {"error": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
        loc = tuple(first.get("loc", ()))
        if first.get("type") == "json_invalid":
            ctx = first.get("ctx")
            detail = ctx.get("error", "not JSON") if isinstance(ctx, dict) else "not JSON"
            if len(loc) == 2 and isinstance(loc[1], int) and isinstance(exc.body, str):
                at = len(exc.body[: loc[1]].encode("utf-8", "surrogatepass"))
                detail = f"{detail} at byte {at}"
            return AsciiJSONResponse({"error": f"malformed JSON body: {detail}"}, status_code=400)
        where = ".".join(str(p) for p in loc[1:] if p != "body")
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        status = 422 if loc[:1] == ("body",) else 400  # bad inputs vs bad query parameters
        return AsciiJSONResponse({"error": message}, status_code=status)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # uvicorn logs the traceback: the exception is raised on once this has answered.
        return AsciiJSONResponse({"error": "internal error"}, status_code=500)

    app.router.route_class = JsonRoute
    app.add_middleware(Guard, config=lambda: daemon.config)
    _add_routes(app, daemon)
    _add_operation_routes(app, daemon)
    add_log_routes(app, daemon)
    add_web_routes(app)
    return app


def _add_routes(app: FastAPI, daemon: DaemonView) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready = daemon.ready
        return AsciiJSONResponse(
            {"status": "ready" if ready else "starting"}, status_code=200 if ready else 503
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(daemon.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/workflows")
    async def workflows() -> dict[str, Any]:
        return {"workflows": [daemon.describe(e) for e in daemon.registry.entries()]}

    @app.post("/api/v1/workflows/{name}/dispatch", status_code=202)
    async def dispatch(name: str, body: DispatchBody | None = None) -> Response:
        entry = daemon.registry.get(name)
        if entry is None:
            raise ApiError(404, f"no workflow {name!r}")
        if entry.workflow is None:
            raise ApiError(409, f"workflow {name!r} does not load: {entry.error}")
        if not daemon.runs.accepting:
            raise ApiError(503, "the daemon is shutting down")
        if name in daemon.disabled:
            raise ApiError(409, f"workflow {name!r} is disabled (tead workflows enable {name})")
        inputs = check_inputs(entry.workflow.spec, (body or DispatchBody()).inputs)
        problem = storable_problem(inputs, max_bytes=daemon.config.max_request_bytes)
        if problem is not None:
            raise ApiError(problem.status, f"inputs: {problem.message}")
        record = daemon.runs.submit(entry, {"kind": "dispatch"}, inputs)
        return run_response(record.to_dict(), status_code=202)

    @app.get("/api/v1/runs")
    async def runs(
        workflow: str | None = None,
        status: str | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> dict[str, Any]:
        if status is not None and status not in {str(s) for s in RunStatus}:
            raise ApiError(
                400, f"unknown status {status!r} (one of {', '.join(str(s) for s in RunStatus)})"
            )
        if not 1 <= limit <= 1000:
            raise ApiError(400, "limit must be between 1 and 1000")
        found = await asyncio.to_thread(
            daemon.store.list_runs, workflow=workflow, status=status, limit=limit, before=before
        )
        return {"runs": [r.to_dict(full=False) for r in found]}

    @app.get("/api/v1/runs/{run_id}")
    async def run(run_id: str) -> Response:
        run_id = await asyncio.to_thread(resolve_run_id, daemon.store, run_id)
        return await asyncio.to_thread(_read_run, daemon, run_id)

    @app.post("/api/v1/runs/{run_id}/cancel")
    async def cancel(run_id: str) -> Response:
        run_id = await asyncio.to_thread(resolve_run_id, daemon.store, run_id)
        try:
            await daemon.runs.cancel(run_id)
        except NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except Conflict as exc:
            raise ApiError(409, str(exc)) from None
        return await asyncio.to_thread(_read_run, daemon, run_id)

    @app.get("/api/v1/breakers")
    async def breakers() -> dict[str, Any]:
        return {"breakers": [_breaker(s) for s in daemon.breakers.states().values()]}

    @app.post("/api/v1/breakers/{name}/reset")
    async def reset(name: str) -> dict[str, Any]:
        try:
            daemon.reset_breaker(name)
        except KeyError:
            raise ApiError(404, f"no circuit breaker {name!r}") from None
        return _breaker(daemon.breakers.states()[name])


def _add_operation_routes(app: FastAPI, daemon: DaemonView) -> None:
    """Disable and enable workflows; re-run runs."""

    @app.post("/api/v1/workflows/{name}/disable")
    async def disable(name: str) -> dict[str, Any]:
        return _switch(daemon, name, enabled=False)

    @app.post("/api/v1/workflows/{name}/enable")
    async def enable(name: str) -> dict[str, Any]:
        return _switch(daemon, name, enabled=True)

    @app.post("/api/v1/runs/{run_id}/rerun", status_code=202)
    async def rerun(run_id: str, body: RerunBody | None = None) -> Response:
        from_failure = (body or RerunBody()).from_failure
        run_id = await asyncio.to_thread(resolve_run_id, daemon.store, run_id)
        record = await asyncio.to_thread(daemon.store.get_run, run_id)
        if record is None:
            raise ApiError(404, f"no run {run_id!r}")
        if not record.status.finished:
            raise ApiError(409, f"run {run_id} is {record.status}: only a finished run is re-run")
        if from_failure and record.status is RunStatus.SUCCEEDED:
            raise ApiError(409, f"run {run_id} succeeded: there is no failure to resume from")
        if record.workflow in daemon.disabled:
            raise ApiError(409, f"workflow {record.workflow!r} is disabled")
        if not daemon.runs.accepting:
            raise ApiError(503, "the daemon is shutting down")
        try:
            new = daemon.rerun(record, from_failure=from_failure)
        except Conflict as exc:
            raise ApiError(409, str(exc)) from None
        return run_response(new.to_dict(), status_code=202)


def _read_run(daemon: DaemonView, run_id: str) -> Response:
    """A stored run's answer (on a worker thread: it may be megabytes)."""
    stored = daemon.store.run_json(run_id)
    if stored is None:
        raise ApiError(404, f"no run {run_id!r}")
    live = daemon.runs.live(run_id) if stored.record.status is RunStatus.RUNNING else None
    if live is not None:  # its nodes so far
        stored.texts["nodes"] = _encode(live_nodes(live.trace, live.logs))
    return stored_run_response(stored)


def _switch(daemon: DaemonView, name: str, *, enabled: bool) -> dict[str, Any]:
    """Enable or disable workflow `name`: its description as `GET /workflows` shows it."""
    entry = daemon.registry.get(name)
    if entry is None:
        raise ApiError(404, f"no workflow {name!r}")
    daemon.set_enabled(name, enabled)
    return daemon.describe(entry)


def _breaker(snapshot: Any) -> dict[str, Any]:
    opened = snapshot.opened_at
    return {
        "name": snapshot.name,
        "state": str(snapshot.state),
        "failure_count": snapshot.failure_count,
        "opened_at": iso_utc(datetime.fromtimestamp(opened, UTC)) if opened else None,
    }


def check_inputs(spec: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Dispatch inputs checked against `on.dispatch.inputs` (defaults filled in)."""
    try:
        return dispatch_inputs(spec, inputs)
    except InputError as exc:
        raise ApiError(422, str(exc)) from None
