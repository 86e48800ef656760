"""The running stack and its cast, shared with the other hostile-input and security tests."""

import pytest

from tests.hostile import Hostile, shared


@pytest.fixture(scope="session")
def hostile(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    return shared(request, tmp_path_factory)
