"""Which callback URLs a stamp job may be given."""

import pytest

from services.common.errors import InvalidInput
from services.gateway.callbacks import check_callback_url


@pytest.mark.parametrize(
    ("url", "dev", "accepted"),
    [
        ("https://distributor.example.com/hooks/emeterai?x=1", False, True),
        ("https://8.8.8.8:8443/hooks", False, True),
        ("http://distributor.example.com/hooks", False, False),
        ("http://127.0.0.1:8000/hooks", True, True),
        ("https://127.0.0.1/hooks", False, False),
        ("https://10.1.2.3/hooks", False, False),
        ("https://169.254.169.254/latest/meta-data", False, False),
        ("https://[::1]/hooks", False, False),
        ("https://localhost/hooks", False, False),
        ("https://user:secret@distributor.example.com/", False, False),
        ("https://token@distributor.example.com/", True, False),
        ("https:///no-host", True, False),
        ("https://distributor.example.com:99999/", True, False),
        ("javascript:alert(1)", True, False),
        ("https://distributor.example.com/" + "a" * 2048, False, False),
    ],
)
def test_callback_urls(url: str, dev: bool, accepted: bool) -> None:
    if accepted:
        assert check_callback_url(url, dev=dev) == url
    else:
        with pytest.raises(InvalidInput):
            check_callback_url(url, dev=dev)
