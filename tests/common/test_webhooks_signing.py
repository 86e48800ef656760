import pytest

from services.common.errors import Unauthenticated
from services.common.webhooks import sign_webhook, verify_webhook

SECRET = b"s3cret"
BODY = b'{"event_id":"evt_1"}'


def test_a_fresh_signature_verifies() -> None:
    verify_webhook(SECRET, BODY, sign_webhook(SECRET, BODY, timestamp=1000), now=1010)


@pytest.mark.parametrize(
    ("header", "now"),
    [
        (sign_webhook(SECRET, BODY + b" ", timestamp=1000), 1000),
        (sign_webhook(b"other", BODY, timestamp=1000), 1000),
        (sign_webhook(SECRET, BODY, timestamp=1000), 1000 + 301),
        ("t=abc,v1=00", 1000),
        ("", 1000),
    ],
    ids=["body-changed", "wrong-secret", "too-old", "malformed", "missing"],
)
def test_anything_else_is_refused(header: str, now: int) -> None:
    with pytest.raises(Unauthenticated):
        verify_webhook(SECRET, BODY, header, now=now)
