import contextlib
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from services.common.errors import Gone, InvalidInput, NotFound
from services.gateway import documents
from services.gateway.documents import LocalDocumentStore, retention_from_days
from tests.conftest import FakeClock


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def _open_segments() -> set[str]:
    """The segment files this process has descriptors open on (names; a number may be reused)."""
    found = set()
    for entry in os.scandir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(entry.path)
            if target.endswith(".seg"):
                found.add(Path(target).name)
    return found


def test_put_answers_a_reference_and_get_returns_the_same_bytes(tmp_path: Path) -> None:
    store = LocalDocumentStore(tmp_path / "docs")
    first = store.put("hold_abc123", b"%PDF-1.7 stamped")
    second = store.put("hold_def456", b"%PDF-1.7 another")
    assert first != second
    assert store.get("hold_abc123", first) == b"%PDF-1.7 stamped"
    assert store.get("hold_def456", second) == b"%PDF-1.7 another"
    # Both in one segment: no file per stamp.
    assert len(_segments(tmp_path / "docs")) == 1
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == [
        p.name for p in _segments(tmp_path / "docs")
    ]


def test_any_store_on_the_folder_reads_what_another_wrote(tmp_path: Path) -> None:
    # Replicas share the folder: each writes its own segments and reads everyone's.
    one, other = LocalDocumentStore(tmp_path), LocalDocumentStore(tmp_path)
    ref_one = one.put("hold_one", b"%PDF one")
    ref_other = other.put("hold_other", b"%PDF other")
    assert len(_segments(tmp_path)) == 2
    assert other.get("hold_one", ref_one) == b"%PDF one"
    assert one.get("hold_other", ref_other) == b"%PDF other"
    # And after a restart, from the references alone.
    one.close()
    assert LocalDocumentStore(tmp_path).get("hold_one", ref_one) == b"%PDF one"


def test_a_reference_answers_only_for_its_own_stamp_and_bytes(tmp_path: Path) -> None:
    store = LocalDocumentStore(tmp_path)
    ref = store.put("hold_mine", b"%PDF mine")
    segment, offset, length = ref.split(":")
    with pytest.raises(NotFound):
        store.get("hold_yours", ref)
    # A reference that is off by a byte, too short, too long, or names no segment finds nothing.
    for wrong in (
        f"{segment}:{int(offset) + 1}:{length}",
        f"{segment}:{offset}:{int(length) - 1}",
        f"{segment}:{offset}:{int(length) + 1}",
        f"20000101T000000Z-00000000.seg:{offset}:{length}",
        f"../{segment}:{offset}:{length}",
        "not a reference",
    ):
        with pytest.raises(NotFound):
            store.get("hold_mine", wrong)
    # A flipped byte on disk is caught by the record's hash.
    path = tmp_path / segment
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(NotFound):
        store.get("hold_mine", ref)


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


def test_a_segment_is_closed_when_full_or_old_and_a_new_one_begun(tmp_path: Path) -> None:
    clock = FakeClock()
    store = LocalDocumentStore(tmp_path, clock=clock, segment_bytes=400, segment_age=timedelta(hours=1))
    refs = {f"hold_{n}": store.put(f"hold_{n}", bytes([n]) * 150) for n in range(4)}
    # Two records of about 200 bytes fill a 400-byte segment.
    assert len(_segments(tmp_path)) == 2
    clock.advance(3600)
    refs["hold_late"] = store.put("hold_late", b"%PDF late")
    assert len(_segments(tmp_path)) == 3
    for stamp_id, ref in refs.items():
        assert store.get(stamp_id, ref) == (
            b"%PDF late" if stamp_id == "hold_late" else bytes([int(stamp_id[5:])]) * 150
        )


def test_puts_at_once_all_land_whole_and_each_is_found(tmp_path: Path) -> None:
    store = LocalDocumentStore(tmp_path)
    refs: dict[str, str] = {}
    lock = threading.Lock()

    def put(n: int) -> None:
        ref = store.put(f"hold_{n}", f"%PDF {n} ".encode() * (n + 1))
        with lock:
            refs[f"hold_{n}"] = ref

    threads = [threading.Thread(target=put, args=(n,)) for n in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(refs) == 64
    offsets = sorted(int(ref.split(":")[1]) for ref in refs.values())
    assert len(set(offsets)) == 64, "no two records share a place"
    for stamp_id, ref in refs.items():
        n = int(stamp_id[5:])
        assert store.get(stamp_id, ref) == f"%PDF {n} ".encode() * (n + 1)


def _age(path: Path, days: float) -> None:
    """Set path's modification time `days` before now, as if it had been written then."""
    when = time.time() - days * 86400
    os.utime(path, (when, when))


def test_segments_past_the_retention_are_deleted_and_their_documents_gone(tmp_path: Path) -> None:
    clock = FakeClock()
    store = LocalDocumentStore(tmp_path, retention=retention_from_days(90), clock=clock)
    old = store.put("hold_old", b"%PDF old")
    clock.advance(3600)
    recent = store.put("hold_recent", b"%PDF recent")
    old_segment, recent_segment = (tmp_path / old.split(":")[0]), (tmp_path / recent.split(":")[0])
    assert old_segment != recent_segment
    _age(old_segment, 91)
    _age(recent_segment, 89)
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("kept")
    _age(unrelated, 400)

    assert store.delete_expired() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([recent_segment.name, "notes.txt"])
    assert store.get("hold_recent", recent) == b"%PDF recent"
    with pytest.raises(Gone) as gone:
        store.get("hold_old", old)
    assert "no longer kept" in gone.value.message and "remains valid and verifiable" in gone.value.message
    assert isinstance(gone.value, NotFound), "callers that handle NotFound handle Gone too"

    # The segment being written is never deleted, however old its file looks.
    _age(recent_segment, 400)
    assert store.delete_expired() == 0
    assert store.get("hold_recent", recent) == b"%PDF recent"


def test_pdfs_kept_one_per_file_are_still_read_by_id_and_expire(tmp_path: Path) -> None:
    # Before segments each stamped PDF was a file named by its stamp id; holds committed then
    # carry no reference.
    clock = FakeClock()
    store = LocalDocumentStore(tmp_path, retention=retention_from_days(90), clock=clock)
    (tmp_path / "hold_before.pdf").write_bytes(b"%PDF before")
    (tmp_path / "hold_older.pdf").write_bytes(b"%PDF older")
    _age(tmp_path / "hold_older.pdf", 91)
    # A write in progress (the temporary file of an atomic write) is left alone...
    in_progress = tmp_path / ".hold_new.pdf.abc123"
    in_progress.write_bytes(b"%PDF half")
    # ...unless it is a crash's leftover from long ago.
    leftover = tmp_path / ".hold_crashed.pdf.def456"
    leftover.write_bytes(b"%PDF half")
    _age(leftover, 2)
    assert store.get("hold_before") == b"%PDF before"
    assert store.delete_expired() == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hold_new.pdf.abc123", "hold_before.pdf"]
    with pytest.raises(Gone):
        store.get("hold_older")


def test_zero_days_keeps_every_document(tmp_path: Path) -> None:
    assert retention_from_days(0) is None
    store = LocalDocumentStore(tmp_path, retention=retention_from_days(0))
    ref = store.put("hold_ancient", b"%PDF")
    store.close()
    for path in tmp_path.iterdir():
        _age(path, 3650)
    assert store.delete_expired() == 0
    assert store.get("hold_ancient", ref) == b"%PDF"
    with pytest.raises(NotFound) as missing:
        store.get("hold_never")
    assert not isinstance(missing.value, Gone)


def test_puts_waiting_together_share_one_fdatasync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalDocumentStore(tmp_path)
    real = os.fdatasync
    syncs: list[int] = []

    def slow_fdatasync(descriptor: int) -> None:
        # As a disk that takes a while: the puts arriving meanwhile wait for the next sync.
        syncs.append(descriptor)
        time.sleep(0.02)
        real(descriptor)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    start = threading.Barrier(32)

    def put(n: int) -> None:
        start.wait(timeout=10)
        store.put(f"hold_{n}", b"%PDF together")

    threads = [threading.Thread(target=put, args=(n,)) for n in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # One sync covers every put that wrote before it began: far fewer syncs than puts.
    assert 1 <= len(syncs) <= 8


def test_after_a_failed_sync_no_put_in_that_segment_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalDocumentStore(tmp_path)
    real = os.fdatasync
    failed: list[int] = []

    failed_segment: list[str] = []

    def failing_once(descriptor: int) -> None:
        # The disk reports an error once: what that sync should have covered may be lost, and a
        # later fdatasync on the same file would return success regardless.
        if not failed:
            failed.append(descriptor)
            failed_segment.append(Path(os.readlink(f"/proc/self/fd/{descriptor}")).name)
            time.sleep(0.05)
            raise OSError(5, "Input/output error")
        real(descriptor)

    monkeypatch.setattr(os, "fdatasync", failing_once)
    start = threading.Barrier(8)
    refs: dict[str, str] = {}
    errors: list[BaseException] = []

    def put(n: int) -> None:
        start.wait(timeout=10)
        try:
            refs[f"hold_{n}"] = store.put(f"hold_{n}", b"%PDF racing")
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors, "the put whose sync failed raised"
    assert len(errors) + len(refs) == 8
    assert all(not ref.startswith(failed_segment[0]) for ref in refs.values()), (
        "no success in the failed segment"
    )
    # The next put begins a new segment and is kept; the failed one's file is closed.
    ref = store.put("hold_after", b"%PDF after")
    assert not ref.startswith(failed_segment[0])
    assert failed_segment[0] not in _open_segments(), "the failed segment's descriptor is closed"
    assert store.get("hold_after", ref) == b"%PDF after"


def test_a_store_that_stopped_stamping_lets_its_last_segment_expire(tmp_path: Path) -> None:
    clock = FakeClock()
    store = LocalDocumentStore(tmp_path, retention=retention_from_days(90), clock=clock)
    ref = store.put("hold_last", b"%PDF last")
    clock.advance(91 * 86400)
    for path in _segments(tmp_path):
        _age(path, 91)
    assert store.delete_expired() == 1
    with pytest.raises(Gone):
        store.get("hold_last", ref)
    # Stamping again begins a new segment rather than writing to the deleted one.
    again = store.put("hold_again", b"%PDF again")
    assert store.get("hold_again", again) == b"%PDF again"


def test_the_retention_must_outlast_a_segment_and_a_closed_store_takes_no_puts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="longer than a segment"):
        LocalDocumentStore(tmp_path, retention=timedelta(minutes=30))
    store = LocalDocumentStore(tmp_path)
    ref = store.put("hold_before", b"%PDF before")
    store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.put("hold_after", b"%PDF after")
    assert store.get("hold_before", ref) == b"%PDF before"


def test_a_segment_whose_name_cannot_be_made_durable_is_not_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalDocumentStore(tmp_path)
    already_open = _open_segments()

    def failing(directory: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(documents, "fsync_directory", failing)
    with pytest.raises(OSError):
        store.put("hold_first", b"%PDF first")
    assert _segments(tmp_path) == [] and _open_segments() == already_open
    monkeypatch.undo()
    ref = store.put("hold_second", b"%PDF second")
    assert store.get("hold_second", ref) == b"%PDF second"


def test_references_with_other_digits_or_far_past_the_end_find_nothing(tmp_path: Path) -> None:
    store = LocalDocumentStore(tmp_path)
    ref = store.put("hold_mine", b"%PDF mine")
    segment, offset, length = ref.split(":")
    arabic_indic = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
    for wrong in (
        f"{segment}:{offset.translate(arabic_indic)}:{length}",
        f"{segment}:{offset}:{length.translate(arabic_indic)}",
        f"{segment}:{offset}:9999999999",
        f"{segment}:999999999999999:{length}",
    ):
        with pytest.raises(NotFound):
            store.get("hold_mine", wrong)
