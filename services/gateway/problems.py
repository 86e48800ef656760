"""Errors as RFC 9457 problem documents: one mapping from domain errors to HTTP statuses.

Only the domain error's message reaches the client: never a host name or a stack trace.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common import errors
from services.gateway.ids import distinct_hex
from services.gateway.problem_catalogue import INDONESIAN_TITLES
from services.gateway.problem_texts import BAHASA, field_problem, indonesian, preferred_language
from services.gateway.upstream import UpstreamFailure

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

HTTP_STATUS: dict[type[errors.DomainError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthenticated: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.Gone: 410,
    errors.Conflict: 409,
    errors.IdempotencyKeyReused: 422,
    errors.PreconditionFailed: 409,
    errors.Exhausted: 429,
    errors.NotImplementedYet: 501,
    errors.Unavailable: 503,
}


class UploadTooLarge(errors.InvalidInput):
    """The request body is over the upload limit."""


HTTP_STATUS[UploadTooLarge] = 413


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """An uploaded file's bytes; UploadTooLarge past `limit`, without reading more than one byte over."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLarge(f"the file is larger than the {limit} byte limit")
    return data


class BodyLimit:
    """Refuses a request body over `limit` bytes with 413, counting what arrives: a declared
    Content-Length is refused before anything is read, and a body without one (chunked) as soon as
    it passes the limit. The application then sees the body end there, and whatever it answers is
    replaced by the 413; no upload is parsed, spooled or kept whole past the limit."""

    def __init__(self, app: Any, limit: int) -> None:
        self._app = app
        self._limit = limit

    def _refusal(self, scope: Any) -> JSONResponse:
        detail = f"the request body is larger than the {self._limit} byte limit"
        return problem(Request(scope), 413, _TITLES[413], detail)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = scope_header(scope, b"content-length")
        if declared.isdigit() and int(declared) > self._limit:
            await self._refusal(scope)(scope, receive, send)
            return
        seen = 0
        over = False

        async def counted() -> Any:
            nonlocal seen, over
            if over:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self._limit:
                    over = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def answered(message: Any) -> None:
            if not over:
                await send(message)
            elif message["type"] == "http.response.start":
                await self._refusal(scope)(scope, receive, send)

        await self._app(scope, counted, answered)


def scope_header(scope: Any, name: bytes) -> str:
    """One request header (its first value), by its lower-case name; "" when absent. Read from the
    ASGI scope itself, for middleware that answers before a Starlette Request is worth building."""
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return ""


def http_status_for(error: errors.DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def request_language(request: Request) -> str:
    return preferred_language(request.headers.get("accept-language", ""))


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "")


def problem(
    request: Request,
    status: int,
    title: str,
    detail: str,
    *,
    retry_after_s: int = 0,
    language: str | None = None,
    **extra: Any,
) -> JSONResponse:
    """language: what the caller asked for, when already read from its Accept-Language."""
    language = language or request_language(request)
    body, said_in = _document(request.url.path, request_id(request), status, title, detail, extra, language)
    return JSONResponse(
        body, status_code=status, media_type=PROBLEM_JSON, headers=_headers(status, retry_after_s, said_in)
    )


async def send_problem(
    scope: Any, send: Any, status: int, detail: str, *, retry_after_s: int = 0, **extra: Any
) -> None:
    """problem() for ASGI middleware that answers before the application: the same document,
    sent straight as two messages. Refusing a surge must cost far less than serving it."""
    rid = scope.get("state", {}).get("request_id", "")
    language = preferred_language(scope_header(scope, b"accept-language"))
    document, said_in = _document(scope["path"], rid, status, title_for(status), detail, extra, language)
    body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *(
            (name.lower().encode(), value.encode())
            for name, value in _headers(status, retry_after_s, said_in).items()
        ),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _document(
    path: str, rid: str, status: int, title: str, detail: str, extra: dict[str, Any], language: str
) -> tuple[dict[str, Any], str]:
    """The problem document, and the language its detail is in: Indonesian when asked for and the
    catalogue has it (problem_texts.py), else English as the services said it."""
    said_in = "en"
    if language == BAHASA and (translated := indonesian(detail)) is not None:
        detail, title, said_in = translated, INDONESIAN_TITLES.get(status, title), BAHASA
    document = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": path,
        "request_id": rid,
        **extra,
    }
    return document, said_in


def language_headers(language: str) -> dict[str, str]:
    """For an answer whose words depend on Accept-Language: which language it is in, and that a
    cache must not give one caller's language to another."""
    return {"Content-Language": language, "Vary": "Accept-Language"}


def _headers(status: int, retry_after_s: int, language: str) -> dict[str, str]:
    headers = language_headers(language)
    if status in (429, 503) or retry_after_s:
        headers["Retry-After"] = str(retry_after_s or 5)
    if status == 401:
        # RFC 6750: tell the client which scheme to sign in with.
        headers["WWW-Authenticate"] = 'Bearer realm="emeterai"'
    return headers


_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    410: "Gone",
    413: "Upload too large",
    422: "Unprocessable request",
    429: "Too many requests",
    500: "Internal error",
    501: "Not available",
    503: "Service unavailable",
}


def title_for(status: int) -> str:
    return _TITLES.get(status, "Error")


class RequestIds:
    """Every answer carries X-Request-Id (the caller's, when short and plain, so logs cannot be
    forged through it); an unexpected error becomes a bare 500 problem. Plain ASGI rather than
    Starlette's BaseHTTPMiddleware, which costs a task and a body copy per request."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        incoming = scope_header(scope, b"x-request-id")
        rid = incoming if incoming.isalnum() and len(incoming) <= 64 else distinct_hex(128)
        scope.setdefault("state", {})["request_id"] = rid
        started = False

        async def send_with_id(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message)["X-Request-Id"] = rid
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": rid})
            if started:
                raise
            response = problem(
                Request(scope), 500, _TITLES[500], "something went wrong on our side; try again"
            )
            await response(scope, receive, send_with_id)


def install(app: FastAPI) -> None:
    # Outermost of the application's middleware, so every refusal carries the id too.
    app.add_middleware(RequestIds)

    @app.exception_handler(errors.DomainError)
    async def _domain(request: Request, exc: errors.DomainError) -> JSONResponse:
        status = http_status_for(exc)
        wait = errors.retry_after_of(exc)
        return problem(request, status, _TITLES.get(status, "Error"), exc.message, retry_after_s=wait)

    @app.exception_handler(UpstreamFailure)
    async def _upstream(request: Request, exc: UpstreamFailure) -> JSONResponse:
        return problem(request, 500, _TITLES[500], "something went wrong on our side; try again")

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        language = request_language(request)
        fields = [
            {
                "field": ".".join(str(p) for p in e["loc"] if p != "body"),
                "problem": field_problem(e, language),
            }
            for e in exc.errors()
        ]
        return problem(
            request, 400, _TITLES[400], "the request has invalid fields", language=language, errors=fields
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(request, exc.status_code, _TITLES.get(exc.status_code, "Error"), str(exc.detail))
