"""The degraded-mode notice as a gateway replica shows it, read from a real auth service on
127.0.0.1: kept through the auth service's outage, and through the replica's own restart."""

from __future__ import annotations

from pathlib import Path

import grpc

from emeterai.v1 import auth_service_pb2_grpc
from services.gateway.notices import NoticeBoard
from tests.auth_server import running_auth
from tests.conftest import free_port

TEXT_ID = "Pembubuhan e-meterai sedang terganggu. Bea meterai dapat dibayar dengan SSP."
TEXT_EN = "Stamping is degraded. The duty may be paid by tax payment slip (SSP)."


async def test_the_last_notice_read_is_shown_by_a_replica_started_while_auth_is_down(tmp_path: Path) -> None:
    kept = tmp_path / "gateway" / "notice.json"
    async with running_auth(tmp_path / "auth") as auth:
        auth.domain.notices.publish(TEXT_ID, TEXT_EN, "operator-1")
        async with grpc.aio.insecure_channel(auth.address) as channel:
            board = NoticeBoard(auth_service_pb2_grpc.AuthServiceStub(channel), keep=kept)
            shown = await board.current()
            assert shown is not None and (shown.text_id, shown.text_en) == (TEXT_ID, TEXT_EN)
            published_at = shown.published_at

    # The auth service is gone and this replica restarts: it shows what it last read.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}") as nowhere:
        restarted = NoticeBoard(auth_service_pb2_grpc.AuthServiceStub(nowhere), keep=kept)
        shown = await restarted.current()
        assert shown is not None and (shown.text_id, shown.text_en) == (TEXT_ID, TEXT_EN)
        assert shown.published_at == published_at


async def test_a_cleared_notice_is_forgotten_on_disk_too(tmp_path: Path) -> None:
    kept = tmp_path / "notice.json"
    async with running_auth(tmp_path / "auth") as auth, grpc.aio.insecure_channel(auth.address) as channel:
        stub = auth_service_pb2_grpc.AuthServiceStub(channel)
        auth.domain.notices.publish(TEXT_ID, TEXT_EN, "operator-1")
        board = NoticeBoard(stub, keep=kept)
        await board.refresh()
        assert kept.exists()
        auth.domain.notices.clear("operator-1")
        await board.refresh()
        assert await board.current() is None and not kept.exists()
        # What the auth service says wins over what was kept.
        kept.write_text('{"text_id": "lama", "text_en": "old", "published_at": "2026-01-01T00:00:00Z"}')
        assert await NoticeBoard(stub, keep=kept).current() is None


async def test_a_kept_notice_that_cannot_be_read_is_no_notice(tmp_path: Path) -> None:
    kept = tmp_path / "notice.json"
    kept.write_text("{not json")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{free_port()}") as nowhere:
        assert await NoticeBoard(auth_service_pb2_grpc.AuthServiceStub(nowhere), keep=kept).current() is None
