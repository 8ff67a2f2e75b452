"""The web page (`/`): one HTML shell and its plain scripts and styles, served from the
package (`tead/daemon/webui`), nothing from elsewhere. The page reads and acts through the
HTTP API with `fetch`, sending the token a person typed in (kept in the tab's
sessionStorage) as the bearer token; what it shows from the API is set as text, never
parsed as HTML, and its Content-Security-Policy allows only its own scripts."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

FILES = Path(__file__).resolve().parent / "webui"
# Only this page's own files; no inline script or style; not to be framed by others.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def add_web_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(FILES / "index.html", headers=HEADERS)

    app.mount("/ui/static", StaticFiles(directory=FILES / "static"), name="ui-static")
