from pathlib import Path

import pytest

from services.common.errors import InvalidInput, NotFound
from services.gateway.documents import LocalDocumentStore


def test_put_then_get_returns_the_same_bytes(tmp_path: Path) -> None:
    store = LocalDocumentStore(tmp_path / "docs")
    store.put("hold_abc123", b"%PDF-1.7 stamped")
    assert store.get("hold_abc123") == b"%PDF-1.7 stamped"
    assert not list((tmp_path / "docs").glob(".incoming-*")), "no temporary file is left behind"


def test_missing_document_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        LocalDocumentStore(tmp_path).get("hold_missing")


@pytest.mark.parametrize("stamp_id", ["../secret", "a/b", "..", "", "x" * 200, "hold\x00", "/etc/passwd"])
def test_ids_never_become_paths(tmp_path: Path, stamp_id: str) -> None:
    (tmp_path / "secret.pdf").write_bytes(b"not yours")
    store = LocalDocumentStore(tmp_path / "docs")
    with pytest.raises(InvalidInput):
        store.get(stamp_id)
    with pytest.raises(InvalidInput):
        store.put(stamp_id, b"x")
