"""The HTTP API under bad input and load (issue 7 §5), against real daemons: body size
limits, inputs that cannot be stored, JSON for every error, slow clients."""

from __future__ import annotations

import json
import select
import socket
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import httpx

from tead.daemon.api import run_response
from tests.daemon_fixture import DaemonProcess

HELLO = "name: hello\nnodes:\n  - name: a\n    run: |\n      return {'hi': 1}\n"
DISPATCH = "/api/v1/workflows/hello/dispatch"
MIB = 1024 * 1024


def nested(depth: int) -> Any:
    """A value with `depth` levels of objects."""
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def started(daemon: DaemonProcess) -> DaemonProcess:
    daemon.write("hello.yaml", HELLO)
    daemon.wait_for(lambda: daemon.get("/api/v1/workflows").json()["workflows"], what="load")
    return daemon


def raw(daemon: DaemonProcess, data: bytes, *, timeout_s: float = 10) -> bytes:
    """Send `data` on a fresh connection; everything the daemon answers until it closes."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=timeout_s) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def head_and_json(answer: bytes) -> tuple[str, dict[str, Any]]:
    """The status line and the JSON body of a raw HTTP answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), answer[:500]
    return head.decode().splitlines()[0], json.loads(body)


def request_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: tead", *headers, "", ""]
    return "\r\n".join(lines).encode()


# --- bodies over max_request_bytes ----------------------------------------------------------


def test_a_body_over_the_limit_is_413_json_and_creates_no_run(daemon: DaemonProcess) -> None:
    """A body over 1 MiB is refused: whether Content-Length says so (answered before any
    body byte is sent), or the body is chunked (stopped long before its 50 MB arrive)."""
    started(daemon)
    too_big = {"inputs": {"blob": "x" * (MIB + 10)}}
    response = daemon.post(DISPATCH, json=too_big)
    assert response.status_code == 413, response.text[:200]
    assert "larger than 1048576 bytes" in response.json()["error"]

    announced = raw(
        daemon,
        request_head(DISPATCH, "Content-Type: application/json", "Content-Length: 50000000"),
    )
    status, body = head_and_json(announced)
    assert status.startswith("HTTP/1.1 413"), announced[:300]
    assert "larger than" in body["error"]

    with socket.create_connection(("127.0.0.1", daemon.port), timeout=30) as sock:
        sock.sendall(
            request_head(DISPATCH, "Content-Type: application/json", "Transfer-Encoding: chunked")
        )
        chunk = b'{"inputs": {"blob": "' + b"x" * 65536
        sent, answer = 0, b""
        while sent < 50_000_000 and not answer:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                break  # closed by the daemon: read its answer
            sent += len(chunk)
            if select.select([sock], [], [], 0)[0]:
                answer = sock.recv(65536)
        answer = answer or sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert sent < 20 * MIB, sent  # the daemon stopped reading near the limit
    assert daemon.runs() == []
    assert daemon.get("/healthz").status_code == 200
    assert daemon.post(DISPATCH, json={"inputs": {"small": "x" * 1000}}).status_code == 202


def test_max_request_bytes_is_configurable(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """`max_request_bytes` (TEAD_MAX_REQUEST_BYTES) moves the limit."""
    daemon = started(daemon_factory(env={"TEAD_MAX_REQUEST_BYTES": "2000"}).start())
    assert daemon.post(DISPATCH, json={"inputs": {"s": "x" * 2100}}).status_code == 413
    assert daemon.post(DISPATCH, json={"inputs": {"s": "x" * 1000}}).status_code == 202


def test_non_ascii_inputs_are_counted_as_utf_8_up_to_the_body_limit(daemon: DaemonProcess) -> None:
    """A body of exactly max_request_bytes (1 MiB) of `é` (2 bytes each in UTF-8, 6 as
    `\\u00e9`) is accepted and stored as sent; one byte more is 413."""
    started(daemon)

    def body(size: int) -> bytes:
        head, tail = b'{"inputs":{"s":"', b'"}}'
        room = size - len(head) - len(tail)
        return head + "é".encode() * (room // 2) + b"x" * (room % 2) + tail

    json_type = {"Content-Type": "application/json"}
    at_limit = daemon.post(DISPATCH, content=body(MIB), headers=json_type)
    assert at_limit.status_code == 202, at_limit.text[:300]
    run = daemon.wait_run(at_limit.json()["id"])
    assert run["inputs"] == json.loads(body(MIB))["inputs"]
    over = daemon.post(DISPATCH, content=body(MIB + 1), headers=json_type)
    assert over.status_code == 413, over.text[:300]
    assert over.json() == {"error": f"the request body is larger than {MIB} bytes"}


# --- inputs that cannot be stored -----------------------------------------------------------


def test_inputs_that_cannot_be_stored_are_refused_before_a_run_exists(
    daemon: DaemonProcess,
) -> None:
    """Inputs nested 900 deep (or holding NaN) are a 422 naming the problem, every time a
    client retries, and create no run; 64 levels are fine."""
    started(daemon)
    for _ in range(3):  # a retrying client
        deep = daemon.post(DISPATCH, json={"inputs": {"x": nested(900)}})
        assert deep.status_code == 422, deep.text[:300]
        assert deep.json()["error"] == "inputs: nested more than 64 levels deep"
    boundary = daemon.post(DISPATCH, json={"inputs": {"x": nested(64)}})
    assert boundary.status_code == 422, boundary.text[:300]
    not_json = daemon.post(
        DISPATCH, content=b'{"inputs": {"x": NaN}}', headers={"Content-Type": "application/json"}
    )
    assert not_json.status_code == 422, not_json.text
    assert "not encodable as JSON" in not_json.json()["error"]
    time.sleep(0.5)  # a run created anyway would be listed by now
    assert daemon.runs() == []
    fine = daemon.post(DISPATCH, json={"inputs": {"x": nested(63)}})
    assert fine.status_code == 202, fine.text[:300]
    run = daemon.wait_run(fine.json()["id"])
    assert run["status"] == "succeeded", run["error"]
    assert run["inputs"]["x"] == nested(63)
    assert len(daemon.runs()) == 1


def test_a_deep_final_state_reads_back(daemon: DaemonProcess) -> None:
    """A run whose final state nests 400 deep (built by the workflow) is answered, not
    500 for ever."""
    daemon.write(
        "deep.yaml",
        """
        name: deep
        nodes:
          - name: a
            run: |
              value = 1
              for _ in range(400):
                  value = {"a": value}
              return {"deep": value}
        """,
    )
    daemon.wait_for(lambda: daemon.get("/api/v1/workflows").json()["workflows"], what="load")
    run = daemon.wait_run(daemon.dispatch("deep")["id"])
    assert run["status"] == "succeeded", run["error"]
    assert run["final_state"]["deep"] == nested(400)
    assert daemon.get("/api/v1/runs").status_code == 200


def test_a_run_part_that_cannot_be_encoded_is_named_not_a_500() -> None:
    """The run encoder's fallback: a part nested deeper than any encoder goes is left out
    and named under `omitted`; the rest of the run is shown."""
    answer = run_response({"id": "r1", "inputs": {"a": 1}, "final_state": nested(5000)})
    assert answer.status_code == 200
    assert json.loads(bytes(answer.body)) == {
        "id": "r1",
        "inputs": {"a": 1},
        "final_state": None,
        "omitted": {"final_state": "cannot be shown as JSON: nested too deeply"},
    }


def test_a_final_state_holding_nan_reads_back_as_strict_json(daemon: DaemonProcess) -> None:
    """A node returning NaN / Infinity: the run succeeds, and reading it answers strict
    JSON (no bare `NaN`, which JSON parsers other than Python's refuse), with the state
    named under `omitted`."""
    daemon.write(
        "nan.yaml",
        """\
        name: nan
        nodes:
          - name: a
            run: |
              return {"x": float("nan"), "y": float("inf")}
        """,
    )
    daemon.wait_for(lambda: daemon.get("/api/v1/workflows").json()["workflows"], what="load")
    run_id = daemon.dispatch("nan")["id"]
    daemon.wait_run(run_id)
    answer = daemon.get(f"/api/v1/runs/{run_id}")
    assert answer.status_code == 200

    def refuse(constant: str) -> Any:
        raise AssertionError(f"{constant} in the answer: not JSON")

    run = json.loads(answer.text, parse_constant=refuse)
    assert run["status"] == "succeeded"
    assert run["final_state"] is None
    assert "JSON" in run["omitted"]["final_state"]


# --- every error is JSON --------------------------------------------------------------------


def test_router_and_body_errors_are_json(daemon: DaemonProcess) -> None:
    """404 / 405 from the router, malformed JSON, a body that is not JSON (415), a body
    that is not an object: all answer `{"error": ...}`."""
    started(daemon)
    for response, status in (
        (daemon.get("/no/such/route"), 404),
        (httpx.delete(f"{daemon.url}/api/v1/runs", timeout=10), 405),
        (
            daemon.post(
                DISPATCH, content=b'{"inputs":', headers={"Content-Type": "application/json"}
            ),
            400,
        ),
        (daemon.post(DISPATCH, content=b"inputs=1", headers={"Content-Type": "text/plain"}), 415),
        (daemon.post(DISPATCH, data={"inputs": "1"}), 415),
        (daemon.post(DISPATCH, json=[1, 2]), 422),
    ):
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json", response.text
        assert response.json()["error"], response.text


def test_unreadable_bodies_get_one_clear_400_naming_the_problem_and_byte(
    daemon: DaemonProcess,
) -> None:
    """A 5000-digit integer, 100 000-deep nesting, bytes that are not UTF-8 and plain
    malformed JSON each get a 400 naming the problem and its byte; a body without a
    Content-Type gets a 415 saying what is expected. No run is created."""
    started(daemon)
    json_type = {"Content-Type": "application/json"}
    cases = {
        b'{"inputs": {"s": "\xc3\xa9", "n": ' + b"1" * 5000 + b"}}": (
            "malformed JSON body: integer too long (more than 4300 digits) at byte 28"
        ),
        b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}": (
            "malformed JSON body: nested too deeply (100001 levels) at byte 100010"
        ),
        b'{"inputs": {"s": "\xff"}}': "malformed JSON body: not UTF-8 at byte 18",
        b'{"inputs": {"s": "\xc3\xa9", }}': (
            "malformed JSON body: Expecting property name enclosed in double quotes at byte 23"
        ),
    }
    for body, message in cases.items():
        answer = daemon.post(DISPATCH, content=body, headers=json_type)
        assert (answer.status_code, answer.json()) == (400, {"error": message}), body[:40]
    bare = daemon.post(DISPATCH, content=b'{"inputs": {}}', headers={})
    assert bare.status_code == 415, bare.text
    assert bare.json() == {
        "error": "the body must be a JSON object with Content-Type: application/json"
    }
    assert daemon.runs() == []


def test_a_non_http_request_and_an_unhandled_exception_are_json(daemon: DaemonProcess) -> None:
    """A request that is not HTTP gets a JSON 400; an unhandled exception (a run row
    corrupted on disk) a JSON 500 and a traceback in the log; the daemon lives."""
    started(daemon)
    status, body = head_and_json(raw(daemon, b"NOT HTTP AT ALL\r\n\r\n"))
    assert status.startswith("HTTP/1.1 400"), status
    assert body == {"error": "invalid HTTP request"}

    run_id = daemon.wait_run(daemon.dispatch("hello")["id"])["id"]
    with sqlite3.connect(daemon.state_dir / "tead.db") as db:
        db.execute("UPDATE runs SET status = 'no such status' WHERE id = ?", (run_id,))
    broken = daemon.get(f"/api/v1/runs/{run_id}")
    assert broken.status_code == 500
    assert broken.headers["content-type"] == "application/json"
    assert broken.json() == {"error": "internal error"}
    daemon.wait_for(lambda: "Traceback" in daemon.logs(), what="the traceback in the log")
    assert daemon.get("/healthz").status_code == 200


# --- slow clients ---------------------------------------------------------------------------


def test_slow_clients_are_closed_and_health_answers_meanwhile(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """300 slow connections (100 send nothing, 100 send their head a byte at a time, 100 a
    partial body) are all answered 408 and closed within `request_timeout` (2 s here) plus
    slack, while /healthz keeps answering; before, none was closed in 30 s."""
    daemon = started(daemon_factory(env={"TEAD_REQUEST_TIMEOUT": "2"}).start())
    head = b"GET /api/v1/runs HTTP/1.1\r\nHost: tead\r\nX-Pad: " + b"p" * 2000 + b"\r\n\r\n"
    partial = request_head(DISPATCH, "Content-Type: application/json", "Content-Length: 100")
    kinds = ["silent", "dribble", "partial"]
    conns: list[tuple[str, socket.socket, float]] = []
    for index in range(300):
        kind = kinds[index % 3]
        sock = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        sock.setblocking(False)
        if kind == "partial":
            sock.send(partial + b'{"inputs": {')
        conns.append((kind, sock, time.monotonic()))
    open_ = {sock.fileno(): (kind, sock, opened, 0) for kind, sock, opened in conns}
    closed_after: dict[str, list[float]] = {kind: [] for kind in kinds}
    answers: list[bytes] = []
    health_s: list[float] = []
    deadline = time.monotonic() + 30
    try:
        while open_ and time.monotonic() < deadline:
            for fd, (kind, sock, opened, sent) in list(open_.items()):
                if kind == "dribble" and sent < len(head):
                    try:
                        sock.send(head[sent : sent + 1])
                        open_[fd] = (kind, sock, opened, sent + 1)
                    except OSError:
                        pass  # closed: seen by the read below
            readable, _, _ = select.select([s for _, s, _, _ in open_.values()], [], [], 0.1)
            for sock in readable:
                kind, _, opened, _ = open_[sock.fileno()]
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if data:
                    answers.append(data)
                    continue
                closed_after[kind].append(time.monotonic() - opened)
                del open_[sock.fileno()]
                sock.close()
            started_at = time.monotonic()
            assert httpx.get(f"{daemon.url}/healthz", timeout=5).status_code == 200
            health_s.append(time.monotonic() - started_at)
    finally:
        for _, sock, _, _ in open_.values():
            sock.close()
    assert not open_, f"{len(open_)} slow connections still open after 30 s"
    for kind, times in closed_after.items():
        assert len(times) == 100, (kind, len(times))
        assert min(times) >= 1.5 and max(times) < 15, (kind, min(times), max(times))
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers[:3]
    assert len(answers) >= 200, len(answers)
    assert max(health_s) < 3.0, health_s  # generous: CI machines are shared
    assert daemon.runs() == []
    assert daemon.logs().count("Traceback") == 0


def test_a_slow_but_timely_request_and_keep_alive_still_work(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """A head sent over 1 s is answered within a 3 s deadline; on a kept-alive connection
    each request's clock starts at its first byte (idle time before it does not count), and
    a later request that does not arrive whole in time gets 408 too."""
    daemon = started(daemon_factory(env={"TEAD_REQUEST_TIMEOUT": "3"}).start())
    request = b"GET /healthz HTTP/1.1\r\nHost: tead\r\n\r\n"
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        for _ in range(2):
            for index in range(0, len(request), 4):
                sock.sendall(request[index : index + 4])
                time.sleep(0.1)
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            time.sleep(2.5)  # idle, under uvicorn's 5 s keep-alive
        sock.sendall(request[:10])
        started_at = time.monotonic()
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert 2.5 < time.monotonic() - started_at < 10


def test_a_client_that_stops_reading_its_response_is_cut_off(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """A client that asks for a 12 MB run and reads none of it is cut off once its
    response has stalled for `request_timeout` (2 s here); the daemon does not hold the
    rest for ever."""
    daemon = daemon_factory(env={"TEAD_REQUEST_TIMEOUT": "2"}).start()
    daemon.write(
        "big.yaml",
        "name: big\nnodes:\n  - name: a\n    run: |\n      return {'blob': 'x' * 12_000_000}\n",
    )
    daemon.wait_for(lambda: daemon.get("/api/v1/workflows").json()["workflows"], what="load")
    run_id = daemon.wait_run(daemon.dispatch("big")["id"], timeout_s=60)["id"]
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(("127.0.0.1", daemon.port))
        sock.sendall(f"GET /api/v1/runs/{run_id} HTTP/1.1\r\nHost: tead\r\n\r\n".encode())
        time.sleep(8)  # reads nothing for four times the timeout
        assert httpx.get(f"{daemon.url}/healthz", timeout=2).status_code == 200
        received = 0
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    assert received < 12_000_000, received
    full = daemon.get(f"/api/v1/runs/{run_id}")
    assert len(full.json()["final_state"]["blob"]) == 12_000_000


def test_sigterm_is_not_held_up_by_a_client_that_never_finishes_its_body(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """A connection with a half-sent body does not keep the daemon from exiting on SIGTERM
    (uvicorn waits for every request in progress): the request deadline ends it."""
    daemon = started(daemon_factory(env={"TEAD_REQUEST_TIMEOUT": "2"}).start())
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(
            request_head(DISPATCH, "Content-Type: application/json", "Content-Length: 100")
            + b'{"inputs": {'
        )
        time.sleep(0.5)
        started_at = time.monotonic()
        assert daemon.stop(timeout_s=30) == 0
        assert time.monotonic() - started_at < 15
