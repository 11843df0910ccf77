"""The web dashboard: static files from service/api/static under /ui/, and / redirects there.

The page is plain JS that calls the same /v1 API with the key the user typed (kept in the
browser's localStorage, sent as a header). So these files need no key themselves, and the
strict Content-Security-Policy (no inline script, no other origins) guards that stored key.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
UI_PATH = "/ui"

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; "
                               "script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag), so an upgraded server never runs a stale app.js
}

router = APIRouter(include_in_schema=False)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse(f"{UI_PATH}/", status_code=307)


class _DashboardFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount(app: FastAPI) -> None:
    if not (STATIC_DIR / "index.html").is_file():  # a broken install: say so instead of 404s per file
        raise RuntimeError(f"dashboard files missing from {STATIC_DIR}; reinstall the package")
    app.mount(UI_PATH, _DashboardFiles(directory=STATIC_DIR, html=True), name="ui")
