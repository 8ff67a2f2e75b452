"""The web page (`/`): one HTML shell and its plain scripts and styles, served from the
package (`tead/daemon/webui`), nothing from elsewhere. The page reads and acts through the
HTTP API with `fetch`, sending the token a person typed in (kept in the tab's
sessionStorage) as the bearer token; what it shows from the API is set as text, never
parsed as HTML, and its Content-Security-Policy allows only its own scripts.

Each of its addresses answers HEAD as GET without the body; other methods get 405 with an
`Allow` header, as the API's routes do (OPTIONS included: nothing here is cross-origin).
The files' folder itself, `/ui/static` or `/ui/static/`, is 404: no listing, no
redirect."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

FILES = Path(__file__).resolve().parent / "webui"
STATIC = "/ui/static"
STYLE_MARK = "<!-- static/tead.css"
# Only this page's own files and its one inline stylesheet (by its hash); no inline
# script; not to be framed by others.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' '{style}'; img-src 'self';"
    " connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def shell() -> tuple[str, dict[str, str]]:
    """The page's HTML with its stylesheet inlined (so that the first paint waits for no
    other request), and the headers that go with it."""
    css = (FILES / "static" / "tead.css").read_text(encoding="utf-8")
    lines = (FILES / "index.html").read_text(encoding="utf-8").splitlines()
    html = "\n".join(f"<style>{css}</style>" if STYLE_MARK in ln else ln for ln in lines)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    headers = {
        "Content-Security-Policy": POLICY.format(style=f"sha256-{digest}"),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
    return html, headers


def add_web_routes(app: FastAPI) -> None:
    html, headers = shell()  # read once: the files are part of the package

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def root() -> HTMLResponse:
        return HTMLResponse(html, headers=headers)  # for HEAD, sent without its body

    # Without this route the router would redirect `/ui/static` to the mount's `/ui/static/`.
    app.add_route(STATIC, no_listing, methods=["GET", "HEAD"], include_in_schema=False)
    app.mount(STATIC, StaticFiles(directory=FILES / "static"), name="ui-static")


async def no_listing(request: Request) -> Response:
    raise HTTPException(404)  # as StaticFiles answers `/ui/static/`
