"""uvicorn's HTTP/1.1 protocol with a deadline for each request, and JSON for its own errors.

uvicorn closes idle keep-alive connections but has no timeout for reading a request: a
client that sends its head a byte at a time, or a partial body, or nothing at all, holds a
connection (and its memory) for ever. Here a request must arrive whole (head and body)
within `timeout_s` of the connection's start, or on a kept-alive connection of the
request's first byte (until then uvicorn's keep-alive timeout applies); else it is answered
408 and the connection closed. The time the app takes is not counted. A client
that stops reading its response for `timeout_s` (the write buffer stays full) is cut off.
This also bounds how long a half-sent request can hold up the daemon's exit.

It hooks into H11Protocol's methods (uvicorn is pinned in constraints.txt);
tests/test_api_limits.py checks the behaviour against a real daemon.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from tead.daemon.apiguard import error_body

log = logging.getLogger(__name__)

WAITING = (h11.IDLE, h11.SEND_BODY)  # the peer's states while a request is still coming


def raw_response(status: int, reason: str, message: str) -> bytes:
    """A whole `Connection: close` response with a JSON error, as bytes."""
    body = error_body(message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class DeadlineProtocol(H11Protocol):
    """H11Protocol, plus: a request must arrive whole within `timeout_s`."""

    timeout_s: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._write_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(self.timeout_s, self._stalled)

    def resume_writing(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
            self._write_deadline = None
        super().resume_writing()

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm()  # the first byte of a later request on a kept-alive connection
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state not in WAITING:
            self._disarm()  # the request has arrived (or the connection is done)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        state = self.conn.their_state
        begun = state is h11.SEND_BODY or (state is h11.IDLE and self.conn.trailing_data[0])
        if begun and self._deadline is None and not self.transport.is_closing():
            self._arm()  # a pipelined request that has begun, or the rest of an unread body

    def send_400_response(self, msg: str) -> None:
        self._disarm()
        self.transport.write(raw_response(400, "Bad Request", "invalid HTTP request"))
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        log.debug(
            "closing a connection from %s: no complete request within %.1f s",
            self.client,
            self.timeout_s,
        )
        unanswered = self.cycle is not None and not self.cycle.response_started
        if self.conn.their_state is h11.IDLE or unanswered:
            message = f"no complete request within {self.timeout_s:g} s"
            self.transport.write(raw_response(408, "Request Timeout", message))
        self.transport.close()

    def _stalled(self) -> None:
        self._write_deadline = None
        log.debug(
            "cutting off %s: it read none of its response for %.1f s", self.client, self.timeout_s
        )
        self.transport.abort()  # close() would wait for the buffer to drain: it never will


def deadline_protocol(timeout_s: float) -> type[DeadlineProtocol]:
    """The protocol class for uvicorn's `http=` with this deadline."""
    return type("TeadHTTPProtocol", (DeadlineProtocol,), {"timeout_s": timeout_s})
