import os
import time
from pathlib import Path

import pytest

from services.common.errors import Gone, InvalidInput, NotFound
from services.gateway.documents import LocalDocumentStore, retention_from_days
from tests.conftest import FakeClock


def test_put_then_get_returns_the_same_bytes(tmp_path: Path) -> None:
    store = LocalDocumentStore(tmp_path / "docs")
    store.put("hold_abc123", b"%PDF-1.7 stamped")
    assert store.get("hold_abc123") == b"%PDF-1.7 stamped"
    assert not list((tmp_path / "docs").glob(".incoming-*")), "no temporary file is left behind"


def test_missing_document_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        LocalDocumentStore(tmp_path).get("hold_missing")


@pytest.mark.parametrize(
    "stamp_id", ["../secret", "a/b", "..", "", "x" * 200, "hold\x00", "/etc/passwd", "hold\n", "hold\r\n"]
)
def test_ids_never_become_paths(tmp_path: Path, stamp_id: str) -> None:
    (tmp_path / "secret.pdf").write_bytes(b"not yours")
    store = LocalDocumentStore(tmp_path / "docs")
    with pytest.raises(InvalidInput):
        store.get(stamp_id)
    with pytest.raises(InvalidInput):
        store.put(stamp_id, b"x")


def _age(path: Path, days: float) -> None:
    """Set path's modification time `days` before now, as if it had been written then."""
    when = time.time() - days * 86400
    os.utime(path, (when, when))


def test_documents_past_the_retention_are_deleted_and_then_gone(tmp_path: Path) -> None:
    clock = FakeClock()
    store = LocalDocumentStore(tmp_path, retention=retention_from_days(90), clock=clock)
    store.put("hold_old", b"%PDF old")
    store.put("hold_recent", b"%PDF recent")
    _age(tmp_path / "hold_old.pdf", 91)
    _age(tmp_path / "hold_recent.pdf", 89)
    # A write in progress: the temporary file of an atomic write, old or not, is left alone...
    in_progress = tmp_path / ".hold_new.pdf.abc123"
    in_progress.write_bytes(b"%PDF half")
    # ...unless it is a crash's leftover from long ago.
    leftover = tmp_path / ".hold_crashed.pdf.def456"
    leftover.write_bytes(b"%PDF half")
    _age(leftover, 2)
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("kept")
    _age(unrelated, 400)

    assert store.delete_expired() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".hold_new.pdf.abc123",
        "hold_recent.pdf",
        "notes.txt",
    ]
    assert store.get("hold_recent") == b"%PDF recent"
    with pytest.raises(Gone) as gone:
        store.get("hold_old")
    assert "no longer kept" in gone.value.message and "remains valid and verifiable" in gone.value.message
    assert isinstance(gone.value, NotFound), "callers that handle NotFound handle Gone too"

    # The write finishes; time passes on the store's clock: the recent one expires in turn.
    in_progress.rename(tmp_path / "hold_new.pdf")
    clock.advance(2 * 86400)
    assert store.delete_expired() == 1
    assert store.delete_expired() == 0
    with pytest.raises(Gone):
        store.get("hold_recent")
    assert store.get("hold_new") == b"%PDF half"


def test_zero_days_keeps_every_document(tmp_path: Path) -> None:
    assert retention_from_days(0) is None
    store = LocalDocumentStore(tmp_path, retention=retention_from_days(0))
    store.put("hold_ancient", b"%PDF")
    _age(tmp_path / "hold_ancient.pdf", 3650)
    assert store.delete_expired() == 0
    assert store.get("hold_ancient") == b"%PDF"
    with pytest.raises(NotFound) as missing:
        store.get("hold_never")
    assert not isinstance(missing.value, Gone)
