"""The web page's addresses over plain HTTP against a real daemon, as a user or a tool
(curl -I, a link checker, a proxy's health check) meets them: HEAD answers as GET does
without the body; OPTIONS and other methods get 405 with `Allow`, as the API's routes do;
the files' folder (`/ui/static`, `/ui/static/`) is 404, neither listed nor redirected. Off
loopback none of this opens anything else without the token."""

from __future__ import annotations

import http.client
from collections.abc import Callable

import httpx

from tests.daemon.test_api_auth import TOKEN, off_loopback
from tests.daemon_fixture import DaemonProcess

PAGE = ("/", "/ui/static/main.js", "/ui/static/tead.css", "/ui/static/favicon.svg")
FOLDER = ("/ui/static", "/ui/static/", "/ui/static?x=1")
VARYING = {"date"}  # the only header allowed to differ between GET and HEAD


def exchange(
    connection: http.client.HTTPConnection, method: str, path: str
) -> tuple[int, dict[str, str], bytes]:
    connection.request(method, path)  # the path sent as it is
    answer = connection.getresponse()
    body = answer.read()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, body


def test_head_answers_as_get_without_the_body(daemon: DaemonProcess) -> None:
    """On one kept-alive connection HEAD then GET then HEAD: were a HEAD's body sent, the
    next answer on the connection would not parse."""
    connection = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    for path in (*PAGE, "/ui/static/no-such.js", *FOLDER):
        head_status, head_headers, head_body = exchange(connection, "HEAD", path)
        status, headers, body = exchange(connection, "GET", path)
        again = exchange(connection, "HEAD", path)
        assert head_status == status == again[0], path
        assert head_body == b"" == again[2], path
        assert int(headers["content-length"]) == len(body) > 0, path
        shown = {k: v for k, v in head_headers.items() if k not in VARYING}
        assert shown == {k: v for k, v in headers.items() if k not in VARYING}, path
    connection.close()
    root = httpx.get(f"{daemon.url}/", timeout=10)
    assert root.status_code == 200 and "<html" in root.text.lower()
    assert "content-security-policy" in httpx.head(f"{daemon.url}/", timeout=10).headers


def test_the_files_folder_is_not_found_neither_listed_nor_redirected(
    daemon: DaemonProcess,
) -> None:
    for path in FOLDER:
        for method in ("GET", "HEAD"):
            answer = httpx.request(method, f"{daemon.url}{path}", timeout=10)
            assert answer.status_code == 404, (method, path)
            assert "location" not in answer.headers, (method, path)
            if method == "GET":
                assert answer.json() == {"error": "Not Found"}
                assert "main.js" not in answer.text


def test_other_methods_get_405_with_allow_as_the_api_routes_do(daemon: DaemonProcess) -> None:
    api = httpx.request("OPTIONS", f"{daemon.url}/api/v1/runs", timeout=10)
    assert (api.status_code, api.headers["allow"]) == (405, "GET")  # the framework's way
    for path in (*PAGE, *FOLDER):
        for method in ("OPTIONS", "POST", "PUT", "DELETE"):
            answer = httpx.request(method, f"{daemon.url}{path}", timeout=10)
            assert answer.status_code == 405, (method, path, answer.text)
            allowed = {part.strip() for part in answer.headers["allow"].split(",")}
            assert allowed == {"GET", "HEAD"}, (method, path)
            assert "error" in answer.json()


def test_off_loopback_only_the_page_itself_needs_no_token(
    daemon_factory: Callable[..., DaemonProcess],
) -> None:
    """HEAD and OPTIONS of the page's own addresses answer without the token (as GET
    does, with no data in them); HEAD and OPTIONS of every other route, and the folder
    without its slash, need it."""
    daemon, run_id = off_loopback(daemon_factory)
    for path in PAGE:
        assert httpx.head(f"{daemon.url}{path}", timeout=10).status_code == 200, path
        options = httpx.request("OPTIONS", f"{daemon.url}{path}", timeout=10)
        assert options.status_code == 405 and run_id not in options.text, path
    assert httpx.head(f"{daemon.url}/ui/static/", timeout=10).status_code == 404
    closed = ("/ui/static", "/api/v1/runs", f"/api/v1/runs/{run_id}", "/openapi.json")
    for path in (*closed, "/api/v1/workflows", "/metrics", "/docs"):
        for method in ("HEAD", "OPTIONS"):
            answer = httpx.request(method, f"{daemon.url}{path}", timeout=10)
            assert answer.status_code == 401, (method, path)
            assert answer.headers["www-authenticate"].startswith("Bearer"), (method, path)
    with_token = {"Authorization": f"Bearer {TOKEN}"}
    folder = httpx.get(f"{daemon.url}/ui/static", headers=with_token, timeout=10)
    assert folder.status_code == 404 and "location" not in folder.headers
    assert daemon.stop() == 0
