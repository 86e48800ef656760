"""The retail web page, and the two routes only it needs.

The page is three static files (services/gateway/web/) that call the same HTTP API as anyone
else; nothing is fetched from outside the gateway, and the page's Content-Security-Policy says
so. Besides the files: GET /v1/config tells the page what this deployment offers, and
POST /v1/previews draws one page of a PDF so the user can point at where the stamp goes.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response

from services.common.errors import Exhausted, NotFound
from services.gateway import problems
from services.gateway.previews import PagePreview, render_page
from services.gateway.stamping import check_document

if TYPE_CHECKING:
    from services.gateway.http_api import Gateway

WEB_DIR = Path(__file__).with_name("web")

# Only the gateway itself: scripts, styles, fetches. Previews are data: URLs and downloads blob: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated every time: a new release of the page must not meet an old script.
    "Cache-Control": "no-cache",
}
_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}

# Renders in flight or waiting for PDFium (which draws one page at a time per process): one
# drawing while the next reads its file's structure. More wait up to PREVIEW_WAIT_S, then 429.
PREVIEW_RENDERS = 2
PREVIEW_WAIT_S = 10.0


@dataclass(frozen=True)
class _StaticFile:
    body: bytes
    media_type: str
    etag: str


def _load(name: str) -> _StaticFile:
    body = (WEB_DIR / name).read_bytes()
    return _StaticFile(body, _MEDIA_TYPES[Path(name).suffix], f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def _serve(request: Request, file: _StaticFile, headers: dict[str, str]) -> Response:
    headers = {**_COMMON_HEADERS, **headers, "ETag": file.etag}
    if request.headers.get("if-none-match") == file.etag:
        return Response(status_code=304, headers=headers)
    return Response(file.body, media_type=file.media_type, headers=headers)


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def preview_json(preview: PagePreview) -> dict[str, Any]:
    return {
        "page": preview.page,
        "page_count": preview.page_count,
        "width_pt": preview.width_pt,
        "height_pt": preview.height_pt,
        "width_px": preview.width_px,
        "height_px": preview.height_px,
        "image": "data:image/png;base64," + base64.b64encode(preview.png).decode(),
    }


class _Renders:
    """At most PREVIEW_RENDERS previews at once in this process, counted until their thread ends:
    a client that goes away does not free a slot while its page is still being drawn."""

    def __init__(self) -> None:
        self._slots = asyncio.Semaphore(PREVIEW_RENDERS)

    async def render(self, document: bytes, page: int) -> PagePreview:
        try:
            async with asyncio.timeout(PREVIEW_WAIT_S):
                await self._slots.acquire()
        except TimeoutError:
            raise Exhausted("many previews are being drawn right now; try again shortly", 2) from None
        drawing = asyncio.ensure_future(asyncio.to_thread(render_page, document, page))
        drawing.add_done_callback(self._done)
        return await asyncio.shield(drawing)

    def _done(self, drawing: asyncio.Future[PagePreview]) -> None:
        self._slots.release()
        if not drawing.cancelled():
            # Retrieved here too, for when nobody awaits it any more.
            drawing.exception()


def web_routes(retail_user: Callable[..., Awaitable[Any]]) -> APIRouter:
    """The page at `/`, its files at `/static/...`, GET /v1/config and POST /v1/previews.

    `retail_user` is the API's dependency for a signed-in retail account."""
    router = APIRouter()
    index = _load("index.html")
    assets = {name: _load(name) for name in ("app.js", "texts.js", "style.css")}
    renders = _Renders()

    @router.get("/", include_in_schema=False)
    async def page(request: Request) -> Response:
        return _serve(request, index, {"Content-Security-Policy": CONTENT_SECURITY_POLICY})

    @router.get("/static/{name}", include_in_schema=False)
    async def static(name: str, request: Request) -> Response:
        if name not in assets:
            raise NotFound("no such file")
        return _serve(request, assets[name], {})

    @router.get("/v1/config", tags=["web"], summary="What this deployment offers the web page")
    async def config(request: Request) -> dict[str, Any]:
        gateway = _gateway(request)
        return {
            # The sandbox payment provider's routes exist only in development mode.
            "sandbox_payments": gateway.settings.is_dev,
            "max_upload_bytes": gateway.settings.max_upload_bytes,
        }

    @router.post(
        "/v1/previews",
        tags=["stamps"],
        summary="Draw one page of a PDF as PNG, with its size in the points a stamp's rect uses",
        dependencies=[Depends(retail_user)],
    )
    async def preview(
        request: Request,
        file: Annotated[UploadFile, File(description="the PDF")],
        page: Annotated[int, Form(ge=0, le=100_000, description="1-based page; 0 = last page")] = 0,
    ) -> dict[str, Any]:
        limit = _gateway(request).settings.max_upload_bytes
        document = await problems.read_upload(file, limit)
        check_document(document, limit)
        return preview_json(await renders.render(document, page))

    return router
