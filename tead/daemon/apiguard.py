"""What stands in front of every API route: the bearer token and the request size limit.

A pure ASGI middleware, so that it covers every path (the OpenAPI document, unknown paths)
and can count a body's bytes as they arrive instead of reading it whole.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tead.daemon.config import DaemonConfig

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/"})  # "/": the web page's empty shell
WEB_FILES = "/ui/static/"  # its scripts and styles: no data in them
READ_METHODS = frozenset({"GET", "HEAD"})
MISSING_TOKEN = "a bearer token is needed (Authorization: Bearer <token>)"
WRONG_TOKEN = "the bearer token is wrong"
NO_CONTENT_TYPE = "the body must be a JSON object with Content-Type: application/json"
MAX_INPUT_DEPTH = 64  # the engine, the store and the API all handle far deeper values


def needs_token(config: DaemonConfig, method: str, path: str) -> bool:
    """Off loopback every route but the health checks, the web page's shell and files (and
    `/metrics` if public) needs the token; on loopback, changes need it once a token is
    set."""
    if path in OPEN_PATHS or path.startswith(WEB_FILES):
        return False
    if path == "/metrics" and config.metrics_public:
        return False
    if not config.loopback:
        return True
    return bool(config.token) and method not in READ_METHODS


def token_refusal(token: str | None, authorization: bytes | None) -> str | None:
    """Why `authorization` (the raw header) does not carry `token`, or None if it does.
    The token is compared in constant time."""
    scheme, _, given = (authorization or b"").strip().partition(b" ")
    if scheme.lower() != b"bearer" or not given.strip():
        return MISSING_TOKEN
    if not token or not secrets.compare_digest(given.strip(), token.encode()):
        return WRONG_TOKEN
    return None


@dataclass(frozen=True, slots=True)
class Unstorable:
    """Why a value cannot be stored with a run, and the HTTP status that says so."""

    status: int
    message: str


def storable_problem(value: Any, *, max_bytes: int) -> Unstorable | None:
    """What keeps `value` (a run's inputs) from being stored and read back, or None: nested
    deeper than MAX_INPUT_DEPTH, not encodable as strict JSON, or over `max_bytes` as
    compact UTF-8 JSON (counted as the request body is: `é` is 2 bytes, a lone surrogate
    the 6 of its `\\udcff` escape)."""
    depth = nesting_depth(value, MAX_INPUT_DEPTH)
    if depth > MAX_INPUT_DEPTH:
        return Unstorable(422, f"nested more than {MAX_INPUT_DEPTH} levels deep")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (ValueError, TypeError) as exc:
        return Unstorable(422, f"not encodable as JSON: {exc}")
    size = len(text.encode("utf-8", "backslashreplace"))
    if size > max_bytes:
        return Unstorable(413, f"{size} bytes as JSON, more than {max_bytes}")
    return None


def nesting_depth(value: Any, limit: int) -> int:
    """How deeply lists and objects nest in `value` (a scalar is 0), counted without
    recursion; stops once past `limit`."""
    deepest = 0
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list | tuple):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return deepest


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}, ensure_ascii=True).encode()


def too_large(limit: int) -> HTTPException:
    return HTTPException(
        413, f"the request body is larger than {limit} bytes", headers={"Connection": "close"}
    )


class Guard:
    """Refuses requests without the token they need (401) and bodies over
    `max_request_bytes` (413, counted as the bytes arrive, whatever Content-Length says)."""

    def __init__(self, app: ASGIApp, *, config: Callable[[], DaemonConfig]) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = self.config()
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        has_body = b"transfer-encoding" in headers or declared not in (None, b"0")
        # Refused before its body is read: the connection is closed, not drained.
        close = [(b"connection", b"close")] if has_body else []
        if needs_token(config, scope["method"], scope["path"]):
            refusal = token_refusal(config.token, headers.get(b"authorization"))
            if refusal is not None:
                challenge = (
                    b"Bearer" if refusal == MISSING_TOKEN else b'Bearer error="invalid_token"'
                )
                await _answer(send, 401, refusal, [(b"www-authenticate", challenge), *close])
                return
        limit = config.max_request_bytes
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _answer(send, 413, str(too_large(limit).detail), close)
            return
        kind = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
        if has_body and not kind:
            await _answer(send, 415, NO_CONTENT_TYPE, close)
            return
        if has_body and kind and not (kind == b"application/json" or kind.endswith(b"+json")):
            shown = kind.decode("latin-1")
            message = f"the body must be JSON (Content-Type: application/json), not {shown}"
            await _answer(send, 415, message, close)
            return
        await self.app(scope, _limited(receive, limit), send)


def _limited(receive: Receive, limit: int) -> Receive:
    """`receive`, raising 413 once the body has grown past `limit` bytes."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise too_large(limit)
        return message

    return counted


async def _answer(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = error_body(message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
