"""The auth service's signing keys as every other service fetches them (RemoteJwks), from a real
auth service on 127.0.0.1, and from none."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.errors import Unavailable
from services.common.tokens import RemoteJwks
from tests.auth_server import running_auth
from tests.conftest import free_port


async def test_known_keys_are_found_and_an_unknown_one_is_not(tmp_path: Path) -> None:
    async with running_auth(tmp_path) as auth:
        jwks = RemoteJwks(auth.address)
        try:
            assert await jwks.public_key(auth.keyring.current.kid) is not None
            # A made-up key id: simply unknown (the verifier answers 401), the auth service was asked.
            assert await jwks.public_key("made-up") is None
        finally:
            await jwks.close()


async def test_while_the_auth_service_cannot_be_asked_an_unknown_key_is_unavailable_not_unknown() -> None:
    jwks = RemoteJwks(f"127.0.0.1:{free_port()}", refetch_interval_s=60)
    try:
        # A good token signed with a key this service has not fetched yet must not be turned away
        # as forged (a 401 signs the page out): it is 503, try again.
        with pytest.raises(Unavailable):
            await jwks.public_key("new-key")
        # Within the refetch interval too, without asking again.
        with pytest.raises(Unavailable):
            await jwks.public_key("new-key")
    finally:
        await jwks.close()
