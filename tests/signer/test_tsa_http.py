"""Our TSA over HTTP on 127.0.0.1 port 0: our client, pyHanko's client, and answers gone wrong."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from asn1crypto import cms, tsp
from pyhanko.sign.timestamps import HTTPTimeStamper
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.signer.pki import DevPki
from services.signer.tsa import TimestampAuthority, TimestampFailed
from services.signer.tsa_client import REPLY_TYPE, HttpTimestampClient, token_from_response
from services.signer.tsa_http import bind, build_app
from tests.conftest import ROOT

from .test_tsa import pyhanko_status, tst_info


def serve_in_thread(app: Starlette) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 port 0 until the generator is closed; yields the base URL."""
    sock = bind("127.0.0.1:0")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the TSA server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        assert not thread.is_alive(), "the TSA server did not stop"


@pytest.fixture(scope="module")
def authority(dev_pki: DevPki) -> TimestampAuthority:
    return TimestampAuthority(dev_pki.load_tsa_identity())


@pytest.fixture(scope="module")
def tsa_url(authority: TimestampAuthority) -> Iterator[str]:
    yield from serve_in_thread(build_app(authority))


def test_our_client_gets_a_token_pyhanko_trusts(tsa_url: str, trust_roots: list) -> None:
    with HttpTimestampClient(tsa_url, timeout=10) as client:
        token = client.timestamp(b"signature value")
        assert client.timestamp(b"signature value") != token  # a fresh serial and nonce each time
    status = pyhanko_status(token, b"signature value", trust_roots)
    assert status.intact and status.valid and status.trusted
    assert tst_info(token)["nonce"].native is not None


def test_pyhankos_http_timestamper_talks_to_our_tsa(tsa_url: str, trust_roots: list) -> None:
    digest = hashlib.sha256(b"document").digest()
    token = asyncio.run(HTTPTimeStamper(tsa_url, timeout=10).async_timestamp(digest, "sha256"))
    status = pyhanko_status(token.dump(), b"document", trust_roots)
    assert status.intact and status.valid and status.trusted


def test_the_endpoint_refuses_what_is_not_a_timestamp_query(tsa_url: str) -> None:
    with httpx.Client(timeout=10) as http:
        assert http.get(tsa_url + "health").text == "ok"
        wrong_type = http.post(tsa_url, content=b"x", headers={"Content-Type": "text/plain"})
        assert wrong_type.status_code == 415
        too_big = http.post(
            tsa_url, content=bytes(64 * 1024), headers={"Content-Type": "application/timestamp-query"}
        )
        assert too_big.status_code == 413
        garbage = http.post(tsa_url, content=b"junk", headers={"Content-Type": "application/timestamp-query"})
        # A malformed query is answered in RFC 3161's own terms.
        assert garbage.status_code == 200 and garbage.headers["content-type"] == REPLY_TYPE
        with pytest.raises(TimestampFailed, match=r"refused the request: .*bad_data_format"):
            token_from_response(garbage.content, bytes(32), None)


# --- a TSA that answers wrongly, behind the same HTTP interface ----------------------------------


def misbehaving_app(authority: TimestampAuthority, behaviour: str) -> Starlette:
    async def answer(request: Request) -> Response:
        query = tsp.TimeStampReq.load(await request.body())
        nonce = query["nonce"].native
        if behaviour == "other imprint":
            return Response(_granted(authority.issue(bytes(32), nonce=nonce)), media_type=REPLY_TYPE)
        if behaviour == "other nonce":
            digest = query["message_imprint"]["hashed_message"].native
            return Response(_granted(authority.issue(digest, nonce=nonce + 1)), media_type=REPLY_TYPE)
        if behaviour == "bad signature":
            digest = query["message_imprint"]["hashed_message"].native
            token = bytearray(authority.issue(digest, nonce=nonce))
            token[-1] ^= 1  # the last byte is the signature's
            return Response(_granted(bytes(token)), media_type=REPLY_TYPE)
        if behaviour == "rejection":
            query["message_imprint"]["hash_algorithm"]["algorithm"] = "md5"
            return Response(authority.respond(query.dump(force=True)), media_type=REPLY_TYPE)
        if behaviour == "html":
            return Response("<html>maintenance</html>", media_type="text/html")
        if behaviour == "slow":
            await asyncio.sleep(1)
        return Response("internal error", status_code=500)

    return Starlette(routes=[Route("/", answer, methods=["POST"])])


def _granted(token: bytes) -> bytes:
    return tsp.TimeStampResp(
        {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(token)}
    ).dump()


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        ("other imprint", "stamped a different document"),
        ("other nonce", "does not carry our nonce"),
        ("bad signature", "token signature does not verify"),
        ("rejection", "refused the request: unsupported hash algorithm md5; use SHA-256; bad_alg"),
        ("html", "did not send a timestamp reply"),
        ("500", "answered HTTP 500"),
    ],
)
def test_wrong_answers_are_refused_with_a_clear_reason(
    authority: TimestampAuthority, behaviour: str, message: str
) -> None:
    for url in serve_in_thread(misbehaving_app(authority, behaviour)):
        with HttpTimestampClient(url, timeout=10) as client, pytest.raises(TimestampFailed) as failure:
            client.timestamp(b"signature value")
        assert message in failure.value.message
        # Users see the reason; the URL stays in the detail for operators.
        assert "127.0.0.1" not in failure.value.message and url in failure.value.detail


def test_a_slow_or_absent_tsa_fails_within_the_timeout(authority: TimestampAuthority) -> None:
    for url in serve_in_thread(misbehaving_app(authority, "slow")):
        started = time.monotonic()
        with HttpTimestampClient(url, timeout=0.3) as client, pytest.raises(TimestampFailed, match="in time"):
            client.timestamp(b"x")
        assert time.monotonic() - started < 0.9
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with (
        HttpTimestampClient(f"http://127.0.0.1:{port}/", timeout=2) as client,
        pytest.raises(TimestampFailed, match="cannot be reached"),
    ):
        client.timestamp(b"x")


# --- the runnable server ---------------------------------------------------------------------------


def test_runs_as_a_module_with_the_dev_pki(tmp_path: Path, trust_roots: list) -> None:
    env = os.environ | {"EMETERAI_DATA_DIR": str(tmp_path), "EMETERAI_MODE": "dev"}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.signer.tsa_http", "--listen", "127.0.0.1:0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = _read_line(process.stdout.readline, timeout=30)
        assert line.startswith("timestamp authority listening on http://127.0.0.1:"), line
        url = line.rsplit(" ", 1)[1]
        with HttpTimestampClient(url, timeout=10) as client:
            token = client.timestamp(b"over the wire")
        # The module made a dev PKI of its own in the data directory, and its TSA signed the token.
        own_roots = DevPki(tmp_path / "pki").load_trust_roots()
        assert pyhanko_status(token, b"over the wire", own_roots).trusted
        assert not pyhanko_status(token, b"over the wire", trust_roots).trusted
    finally:
        process.terminate()
        process.wait(timeout=15)
    # uvicorn drains, then lets SIGTERM end the process as the signal's default would.
    assert process.stderr is not None
    assert "Finished server process" in process.stderr.read()
    assert process.returncode in (0, -signal.SIGTERM)


def _read_line(readline: Callable[[], str], timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert result, "the TSA module printed nothing"
    return result[0].strip()
