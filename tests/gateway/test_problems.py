from collections.abc import Iterator
from typing import Annotated

import pytest
from fastapi import FastAPI, File, UploadFile
from fastapi.testclient import TestClient

from services.common import errors
from services.gateway.problems import BodyLimit, UploadTooLarge, http_status_for, install


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInput("bad"), 400),
        (UploadTooLarge("too big"), 413),
        (errors.Unauthenticated("who"), 401),
        (errors.PermissionDenied("no"), 403),
        (errors.NotFound("gone"), 404),
        (errors.Gone("no longer kept"), 410),
        (errors.Conflict("twice"), 409),
        (errors.PreconditionFailed("not now"), 409),
        (errors.Exhausted("slow down"), 429),
        (errors.Unavailable("later"), 503),
        (errors.DomainError("unclassified"), 500),
    ],
)
def test_each_domain_error_has_one_http_status(error: errors.DomainError, status: int) -> None:
    assert http_status_for(error) == status


def test_a_known_wait_is_the_retry_after_header() -> None:
    app = FastAPI()
    install(app)

    @app.get("/limited")
    async def limited() -> None:
        raise errors.Exhausted("too many requests; try again in 42 seconds", retry_after_s=42)

    @app.get("/busy")
    async def busy() -> None:
        raise errors.Exhausted("slow down")

    client = TestClient(app)
    limited_answer = client.get("/limited")
    assert limited_answer.status_code == 429 and limited_answer.headers["retry-after"] == "42"
    assert limited_answer.json()["detail"] == "too many requests; try again in 42 seconds"
    assert client.get("/busy").headers["retry-after"] == "5"


def _upload_app(limit: int) -> FastAPI:
    app = FastAPI()
    app.add_middleware(BodyLimit, limit=limit)
    install(app)

    @app.post("/upload")
    async def upload(file: Annotated[UploadFile, File()]) -> dict[str, int]:
        return {"size": len(await file.read())}

    return app


def test_a_body_over_the_limit_is_413_whether_or_not_its_length_is_declared() -> None:
    client = TestClient(_upload_app(limit=10_000))
    small = client.post("/upload", files={"file": ("a.pdf", b"x" * 1000, "application/pdf")})
    assert small.status_code == 200 and small.json() == {"size": 1000}
    declared = client.post("/upload", files={"file": ("a.pdf", b"x" * 20_000, "application/pdf")})
    assert declared.status_code == 413 and declared.headers["x-request-id"]
    assert declared.json()["request_id"] == declared.headers["x-request-id"]

    def chunks() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n\r\n'
        for _ in range(100):
            yield b"x" * 1000
        yield b"\r\n--b--\r\n"

    chunked = client.post(
        "/upload", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert "content-length" not in chunked.request.headers
    assert chunked.status_code == 413, chunked.text
    assert chunked.headers["content-type"].startswith("application/problem+json")


def test_every_answer_carries_a_request_id_and_a_crash_leaks_nothing() -> None:
    app = FastAPI()
    install(app)

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("database at db-7.internal:5432 is down")

    @app.get("/fine")
    async def fine() -> dict[str, str]:
        return {"ok": "yes"}

    client = TestClient(app, raise_server_exceptions=False)
    crashed = client.get("/crash", headers={"X-Request-Id": "abc123"})
    assert crashed.status_code == 500 and crashed.headers["content-type"] == "application/problem+json"
    assert crashed.headers["x-request-id"] == "abc123" and crashed.json()["request_id"] == "abc123"
    assert "db-7" not in crashed.text and "Traceback" not in crashed.text
    # A caller's id that could forge log lines is replaced by one of ours.
    forged = client.get("/fine", headers={"X-Request-Id": "x\" level=ERROR"})
    assert forged.status_code == 200 and len(forged.headers["x-request-id"]) == 32
    assert client.get("/fine").headers["x-request-id"] != forged.headers["x-request-id"]
