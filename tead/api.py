"""The HTTP API (CONTRACT §3). Errors become `{"error": "..."}` with a fitting status here,
in one place."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException

from tead import __version__
from tead.errors import StorageFullError
from tead.records import RunStatus, iso_utc
from tead.runs import Conflict, NotFound
from tead.spec import input_matches

if TYPE_CHECKING:
    from tead.daemon import Daemon


class DispatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, Any] = {}


class AsciiJSONResponse(JSONResponse):
    """JSON escaped to ASCII: a state may hold lone surrogates (from non-UTF-8 file
    names), which cannot be encoded as UTF-8."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def build_app(daemon: Daemon) -> FastAPI:
    app = FastAPI(
        title="tead",
        version=__version__,
        docs_url="/docs",
        redoc_url=None,
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
            return AsciiJSONResponse({"error": f"malformed JSON body: {detail}"}, status_code=400)
        where = ".".join(str(p) for p in loc[1:] if p != "body")
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        status = 422 if loc[:1] == ("body",) else 400  # bad inputs vs bad query parameters
        return AsciiJSONResponse({"error": message}, status_code=status)

    async def authorized(request: Request) -> None:  # async: no thread hop per request
        token = daemon.config.token
        if daemon.config.loopback and not token:
            return
        given = request.headers.get("authorization", "")
        expected = f"Bearer {token}".encode()
        if not token or not secrets.compare_digest(given.encode("utf-8", "replace"), expected):
            raise ApiError(401, "a bearer token is needed (Authorization: Bearer <token>)")

    guarded = [Depends(authorized)]
    _add_routes(app, daemon, guarded)
    return app


def _add_routes(app: FastAPI, daemon: Daemon, guarded: list[Any]) -> None:
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

    @app.post("/api/v1/workflows/{name}/dispatch", status_code=202, dependencies=guarded)
    async def dispatch(name: str, body: DispatchBody | None = None) -> dict[str, Any]:
        entry = daemon.registry.get(name)
        if entry is None:
            raise ApiError(404, f"no workflow {name!r}")
        if entry.workflow is None:
            raise ApiError(409, f"workflow {name!r} does not load: {entry.error}")
        if not daemon.runs.accepting:
            raise ApiError(503, "the daemon is shutting down")
        inputs = check_inputs(entry.workflow.spec, (body or DispatchBody()).inputs)
        record = daemon.runs.submit(entry, {"kind": "dispatch"}, inputs)
        return record.to_dict()

    @app.get("/api/v1/runs")
    async def runs(
        workflow: str | None = None, status: str | None = None, limit: int = 50
    ) -> dict[str, Any]:
        if status is not None and status not in {str(s) for s in RunStatus}:
            raise ApiError(
                400, f"unknown status {status!r} (one of {', '.join(str(s) for s in RunStatus)})"
            )
        if not 1 <= limit <= 1000:
            raise ApiError(400, "limit must be between 1 and 1000")
        found = daemon.store.list_runs(workflow=workflow, status=status, limit=limit)
        return {"runs": [r.to_dict(full=False) for r in found]}

    @app.get("/api/v1/runs/{run_id}")
    async def run(run_id: str) -> dict[str, Any]:
        record = daemon.store.get_run(run_id)
        if record is None:
            raise ApiError(404, f"no run {run_id!r}")
        return record.to_dict()

    @app.post("/api/v1/runs/{run_id}/cancel", dependencies=guarded)
    async def cancel(run_id: str) -> dict[str, Any]:
        try:
            record = await daemon.runs.cancel(run_id)
        except NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except Conflict as exc:
            raise ApiError(409, str(exc)) from None
        return record.to_dict()

    @app.get("/api/v1/breakers")
    async def breakers() -> dict[str, Any]:
        return {"breakers": [_breaker(s) for s in daemon.breakers.states().values()]}

    @app.post("/api/v1/breakers/{name}/reset", dependencies=guarded)
    async def reset(name: str) -> dict[str, Any]:
        try:
            daemon.reset_breaker(name)
        except KeyError:
            raise ApiError(404, f"no circuit breaker {name!r}") from None
        return _breaker(daemon.breakers.states()[name])


def _breaker(snapshot: Any) -> dict[str, Any]:
    from datetime import UTC, datetime

    opened = snapshot.opened_at
    return {
        "name": snapshot.name,
        "state": str(snapshot.state),
        "failure_count": snapshot.failure_count,
        "opened_at": iso_utc(datetime.fromtimestamp(opened, UTC)) if opened else None,
    }


def check_inputs(spec: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Dispatch inputs checked against `on.dispatch.inputs` (defaults filled in)."""
    declared = spec.on.dispatch.inputs if spec and spec.on and spec.on.dispatch else None
    if declared is None:
        return inputs
    unknown = sorted(set(inputs) - set(declared))
    if unknown:
        raise ApiError(422, f"unknown input {unknown[0]!r} (declared: {', '.join(declared)})")
    checked = {}
    for name, item in declared.items():
        if name in inputs:
            if not input_matches(item.type, inputs[name]):
                raise ApiError(422, f"input {name!r} must be of type {item.type}")
            checked[name] = inputs[name]
        elif item.required and item.default is None:
            raise ApiError(422, f"input {name!r} is required")
        elif item.default is not None:
            checked[name] = item.default
    return checked
