"""/docs (Swagger UI) and /redoc from local assets: the JavaScript ships in the `fastapi-offline`
package, so no page of this origin (where API keys are typed) runs a script from a CDN."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs-assets"
# Swagger UI starts itself from an inline script; every script and style still comes from this origin.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)


def _html(response: HTMLResponse) -> HTMLResponse:
    response.headers.update({"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                             "Referrer-Policy": "no-referrer"})
    return response


@router.get("/docs")
async def swagger(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return _html(get_swagger_ui_html(
        openapi_url=f"{root}/openapi.json", title="diggan-service - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js", swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png"))


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return _html(get_redoc_html(openapi_url=f"{root}/openapi.json", title="diggan-service - ReDoc",
                                redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                                redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False))


def mount(app: FastAPI) -> None:
    app.include_router(router)
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")
