"""Degraded-mode notices: published by operators, kept on record, and shown by every gateway replica
even while the auth service is away."""

from __future__ import annotations

import grpc
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from emeterai.v1 import auth_service_pb2, auth_service_pb2_grpc
from services.auth.domain import AuthDomain
from services.auth.servicer import AUTH_STATUS_CODES, AuthServicer
from services.auth.store import notices
from services.common.errors import InvalidInput
from services.common.interceptors import ErrorInterceptor
from services.gateway.notices import REFRESH_S, NoticeBoard

SSP_ID = "Layanan meterai elektronik sedang terganggu. Bea meterai dapat dibayar dengan SSP."
SSP_EN = "E-meterai stamping is down. The stamp duty may be paid with a tax payment slip (SSP)."


def test_one_notice_at_a_time_and_every_one_on_record(domain: AuthDomain, engine: Engine) -> None:
    assert domain.notices.current() is None
    domain.notices.publish("Pemeliharaan pukul 22.00", "Maintenance at 22:00", "acc_op1")
    published = domain.notices.publish(SSP_ID, SSP_EN, "acc_op1")
    assert domain.notices.current() == published
    domain.notices.clear("acc_op2")
    assert domain.notices.current() is None
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(notices)).scalar_one() == 2
    with pytest.raises(InvalidInput, match="English"):
        domain.notices.publish(SSP_ID, "  ", "acc_op1")
    with pytest.raises(InvalidInput, match="at most"):
        domain.notices.publish("x" * 1001, SSP_EN, "acc_op1")


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_replica_keeps_showing_the_notice_while_auth_is_away(domain: AuthDomain) -> None:
    ticks = Ticks()
    server = grpc.aio.server(interceptors=[ErrorInterceptor(AUTH_STATUS_CODES)])
    auth_service_pb2_grpc.add_AuthServiceServicer_to_server(AuthServicer(domain), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = auth_service_pb2_grpc.AuthServiceStub(channel)
    try:
        board = NoticeBoard(stub, ticks)
        assert await board.current() is None
        await stub.PublishNotice(auth_service_pb2.PublishNoticeRequest(text_id=SSP_ID, text_en=SSP_EN))
        # Read again only once it may be stale.
        assert await board.current() is None
        ticks.now += REFRESH_S
        shown = await board.current()
        assert shown is not None and (shown.text_id, shown.text_en) == (SSP_ID, SSP_EN)
        # The auth service goes away: the notice stays up.
        await server.stop(None)
        ticks.now += REFRESH_S
        shown = await board.current()
        assert shown is not None and shown.text_en == SSP_EN
    finally:
        await channel.close()
        await server.stop(None)
