"""The HTTP API's browsable documentation at /docs: Swagger UI over /openapi.json, its files
served by the gateway itself (the fastapi-offline package's copy of Swagger UI), so the docs work
where the internet does not reach, and no third party sees who reads them. FastAPI's own /docs
would load Swagger UI from a CDN."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
_ASSETS = Path(str(files("fastapi_offline") / "static"))


def install(app: FastAPI) -> None:
    """Serve /docs and its assets on `app` (created with docs_url=None)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=_ASSETS), name="api-docs-assets")
    title = f"{app.title}: HTTP API"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=title,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon.png",
        )
