"""The bearer token off loopback (issue 7 §4): every route but the health checks needs it,
against a real daemon listening on 0.0.0.0 (reached through 127.0.0.1)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import httpx

from tests.daemon_fixture import DaemonProcess, free_port
from tests.helpers import daemon_cli

TOKEN = "s3cret-token"
HELLO = "name: hello\nnodes:\n  - name: a\n    run: |\n      return {'password': 'hunter2'}\n"
MISSING = "a bearer token is needed"
WRONG = "the bearer token is wrong"


def off_loopback(
    daemon_factory: Callable[..., DaemonProcess], **env: str
) -> tuple[DaemonProcess, str]:
    """A started daemon on 0.0.0.0 with TOKEN, one succeeded run of `hello`; its run id."""
    port = free_port()
    daemon = daemon_factory(
        port=port,
        extra_args=["--listen", f"0.0.0.0:{port}"],
        env={"TEAD_TOKEN": TOKEN, **env},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    daemon.write("hello.yaml", HELLO)
    daemon.start()
    daemon.wait_for(lambda: daemon.get("/api/v1/workflows").json()["workflows"], what="load")
    run = daemon.wait_run(daemon.dispatch("hello")["id"])
    assert run["status"] == "succeeded"
    return daemon, str(run["id"])


def routes(run_id: str) -> list[tuple[str, str, int]]:
    """Every route (method, path, status with the right token)."""
    return [
        ("GET", "/metrics", 200),
        ("GET", "/api/v1/workflows", 200),
        ("GET", "/api/v1/runs", 200),
        ("GET", f"/api/v1/runs/{run_id}", 200),
        ("GET", "/api/v1/breakers", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/docs", 200),
        ("GET", "/no/such/route", 404),
        ("POST", "/api/v1/workflows/hello/dispatch", 202),
        ("POST", f"/api/v1/runs/{run_id}/cancel", 409),
        ("POST", "/api/v1/breakers/no:such/reset", 404),
    ]


def call(daemon: DaemonProcess, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    body = {"json": {"inputs": {}}} if method == "POST" else {}
    return httpx.request(method, f"{daemon.url}{path}", headers=headers, timeout=30, **body)


def test_off_loopback_every_route_but_the_health_checks_needs_the_token(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """No token: 401 'needed'; a wrong one: 401 'wrong' (distinct); both JSON with a
    `WWW-Authenticate: Bearer` challenge; the right one: the route's own answer. Reads
    (inputs, final states with passwords) are no exception."""
    daemon, run_id = off_loopback(daemon_factory)
    for path in ("/healthz", "/readyz"):
        assert call(daemon, "GET", path, None).status_code == 200
    for method, path, status in routes(run_id):
        missing = call(daemon, method, path, None)
        assert missing.status_code == 401, (method, path, missing.text)
        assert missing.json()["error"].startswith(MISSING), (path, missing.text)
        assert missing.headers["www-authenticate"].startswith("Bearer"), path
        assert "hunter2" not in missing.text
        for wrong_token in ("wrong", TOKEN[:-1], TOKEN + "x"):
            wrong = call(daemon, method, path, wrong_token)
            assert wrong.status_code == 401, (method, path, wrong.text)
            assert wrong.json()["error"].startswith(WRONG), (path, wrong_token, wrong.text)
            assert wrong.headers["www-authenticate"].startswith("Bearer"), path
        scheme_only = httpx.get(f"{daemon.url}{path}", headers={"Authorization": TOKEN}, timeout=10)
        assert scheme_only.status_code == 401
        right = call(daemon, method, path, TOKEN)
        assert right.status_code == status, (method, path, right.text)
    assert daemon.get(f"/api/v1/runs/{run_id}").json()["final_state"]["password"] == "hunter2"
    assert daemon.stop() == 0


def test_metrics_public_leaves_only_metrics_open(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """`metrics_public: true` (TEAD_METRICS_PUBLIC): /metrics needs no token, the rest still do."""
    daemon, run_id = off_loopback(daemon_factory, TEAD_METRICS_PUBLIC="true")
    metrics = call(daemon, "GET", "/metrics", None)
    assert metrics.status_code == 200
    assert "tead_runs_total" in metrics.text
    for method, path, _ in routes(run_id):
        if path != "/metrics":
            assert call(daemon, method, path, None).status_code == 401, path


def test_client_commands_send_the_token_off_loopback(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """`tead runs|workflows|breakers --url` pass $TEAD_TOKEN; without it, or with a wrong one,
    they say so in one line and exit 2."""
    daemon, run_id = off_loopback(daemon_factory)

    def tead(*args: str, token: str | None) -> subprocess.CompletedProcess[str]:
        return daemon_cli(daemon, *args, env={} if token is None else {"TEAD_TOKEN": token})

    for command in (["runs"], ["runs", "show", run_id], ["workflows"], ["breakers"]):
        allowed = tead(*command, token=TOKEN)
        assert allowed.returncode == 0, (command, allowed.stderr)
        for token, message in ((None, MISSING), ("wrong", WRONG)):
            refused = tead(*command, token=token)
            assert refused.returncode == 2, (command, refused.stdout, refused.stderr)
            lines = refused.stderr.strip().splitlines()
            assert len(lines) == 1 and message in lines[0], refused.stderr
    assert run_id in tead("runs", token=TOKEN).stdout


def test_a_non_ascii_token_works_from_the_client_commands(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """A token with non-ASCII characters, which the daemon accepts (compared as UTF-8),
    is sent by `tead dispatch` as UTF-8: the run is created, no traceback."""
    token = "pässwört-ŧøken"
    daemon = daemon_factory(env={"TEAD_TOKEN": token})
    daemon.write("hello.yaml", HELLO)
    daemon.start()
    daemon.wait_for(lambda: daemon.get("/api/v1/workflows").json()["workflows"], what="load")
    found = daemon_cli(daemon, "dispatch", "hello", "--wait", env={"TEAD_TOKEN": token})
    assert found.returncode == 0, found.stderr
    assert "Traceback" not in found.stderr
    assert daemon.runs(workflow="hello")[0]["status"] == "succeeded"
