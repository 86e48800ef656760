import pytest

from services.common import errors
from services.gateway.problems import UploadTooLarge, http_status_for


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
