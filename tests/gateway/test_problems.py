import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.common import errors
from services.gateway.problems import UploadTooLarge, http_status_for, install


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInput("bad"), 400),
        (UploadTooLarge("too big"), 413),
        (errors.Unauthenticated("who"), 401),
        (errors.PermissionDenied("no"), 403),
        (errors.NotFound("gone"), 404),
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
