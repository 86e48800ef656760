"""Oversized and slow uploads are bounded, and no error says anything about the inside.

The stack runs with a 1 MiB upload limit and 2 s header and body timeouts (tests/hostile.py).
Raw sockets play the clients an HTTP library would not: a body declared larger than the limit and
never sent, a chunked body that does not stop, a client that trickles its headers or its body,
one that connects and says nothing.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from urllib.parse import urlsplit

import grpc
import httpx
import pytest

from emeterai.v1 import distributor_service_pb2 as dpb
from tests.hostile import (
    HTTP_BODY_TIMEOUT_S,
    HTTP_HEADER_TIMEOUT_S,
    UPLOAD_LIMIT,
    Hostile,
    rpc_code,
    small_pdf,
)

pytestmark = pytest.mark.e2e

# Slack for a loaded 2-core machine on top of the configured timeouts.
SLACK_S = 3.0
# How long a test waits for a server that does not cut a client off: well past every bound.
GIVE_UP_S = 20.0


# The start of a form with one file, boundary "x": what follows is the file's content.
MULTIPART_HEAD = (
    b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
    b"Content-Type: application/pdf\r\n\r\n%PDF-1.7\n"
)


def connect(hostile: Hostile) -> socket.socket:
    address = urlsplit(hostile.stack.http)
    sock = socket.create_connection((address.hostname, address.port), timeout=GIVE_UP_S)
    return sock


def read_answer(sock: socket.socket, within_s: float) -> bytes:
    """What the server sends until it closes the connection or `within_s` passes."""
    sock.settimeout(0.2)
    received = b""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        received += chunk
    return received


def closed_within(sock: socket.socket, within_s: float) -> bool:
    """Whether the server closes the connection within `within_s` (after whatever it answers)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True
    return False


def request_head(hostile: Hostile, path: str, headers: dict[str, str]) -> bytes:
    host = urlsplit(hostile.stack.http).netloc
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_declared_oversized_body_is_refused_before_it_is_sent(hostile: Hostile) -> None:
    with connect(hostile) as sock:
        sock.sendall(
            request_head(
                hostile,
                "/v1/verify",
                {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(50 * UPLOAD_LIMIT)},
            )
        )
        answer = read_answer(sock, SLACK_S)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer


def test_a_chunked_body_is_cut_off_once_past_the_limit(hostile: Hostile) -> None:
    chunk = b"x" * 65536
    sent = 0
    answer = b""
    with connect(hostile) as sock:
        sock.sendall(
            request_head(
                hostile,
                "/v1/verify",
                {"Content-Type": "multipart/form-data; boundary=x", "Transfer-Encoding": "chunked"},
            )
        )
        sock.sendall(b"%x\r\n" % len(MULTIPART_HEAD) + MULTIPART_HEAD + b"\r\n")
        # Up to 32 times the limit; the answer must come long before. The server may close the
        # connection while we still send: its answer is read below all the same.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 32 * UPLOAD_LIMIT and not answer:
                sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    answer = sock.recv(65536)
        answer += read_answer(sock, SLACK_S)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 8 * UPLOAD_LIMIT, f"the server read {sent} bytes before refusing"


def test_an_oversized_file_is_413_through_the_api(hostile: Hostile) -> None:
    big = small_pdf() + b"%" * UPLOAD_LIMIT
    for path, data in (("/v1/stamps", {"pin": "482915"}), ("/v1/verify", None), ("/v1/previews", None)):
        response = hostile.http.post(
            path,
            data=data,
            files={"file": ("big.pdf", big, "application/pdf")},
            headers=hostile.cast.fuzzed | {"Idempotency-Key": "too-big"},
        )
        assert response.status_code == 413, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
    # Over gRPC, the distributor's document over the same limit is refused as invalid.
    api = hostile.distributor_api
    code = rpc_code(
        lambda: api.VerifyDocument(
            dpb.VerifyDocumentRequest(document=big), metadata=hostile.cast.distributor.metadata, timeout=30
        ),
        hostile.leaks,
        "VerifyDocument",
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_a_trickled_body_is_cut_off_in_bounded_time(hostile: Hostile) -> None:
    with connect(hostile) as sock:
        sock.sendall(
            request_head(
                hostile,
                "/v1/verify",
                {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": "100000"},
            )
            + MULTIPART_HEAD
        )
        started = time.monotonic()
        answer = b""
        # A server that closes on the trickle ends the loop; the asserts below judge how and when.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() - started < GIVE_UP_S and not answer:
                sock.sendall(b"x")
                if select.select([sock], [], [], 0.5)[0]:
                    answer = sock.recv(65536)
        elapsed = time.monotonic() - started
        assert closed_within(sock, SLACK_S), "the connection stayed open after the answer"
    assert elapsed < HTTP_BODY_TIMEOUT_S + SLACK_S, f"a trickling client held a request for {elapsed:.1f} s"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]


def test_trickled_headers_are_cut_off_in_bounded_time(hostile: Hostile) -> None:
    with connect(hostile) as sock:
        sock.sendall(b"GET /v1/notice HTTP/1.1\r\nHost: gateway\r\n")
        started = time.monotonic()
        # The server cutting the trickle off ends the loop, by a close or a reset; the assert
        # below judges when.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while time.monotonic() - started < GIVE_UP_S:
                sock.sendall(b"X")
                if select.select([sock], [], [], 0.5)[0] and not sock.recv(65536):
                    break
        elapsed = time.monotonic() - started
    assert elapsed < HTTP_HEADER_TIMEOUT_S + SLACK_S, (
        f"trickled headers held a connection for {elapsed:.1f} s"
    )


def test_a_silent_connection_is_closed_in_bounded_time(hostile: Hostile) -> None:
    with connect(hostile) as sock:
        started = time.monotonic()
        assert closed_within(sock, GIVE_UP_S)
        elapsed = time.monotonic() - started
    assert elapsed < HTTP_HEADER_TIMEOUT_S + SLACK_S, f"a silent connection stayed open {elapsed:.1f} s"


def test_a_slow_but_steady_upload_is_not_cut_off(hostile: Hostile) -> None:
    # Longer in all than the body timeout, but never stalled: a phone on a poor connection.
    document = small_pdf()
    pieces = [document[i : i + 2048] for i in range(0, len(document), 2048)]

    def trickle() -> object:
        for piece in pieces:
            time.sleep(HTTP_BODY_TIMEOUT_S * 1.5 / len(pieces))
            yield piece

    boundary = "steady"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> object:
        yield head
        yield from trickle()
        yield tail

    response = hostile.http.post(
        "/v1/verify",
        content=body(),
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + len(document) + len(tail)),
        },
    )
    assert response.status_code == 200, response.text


def test_no_error_anywhere_names_a_host_a_file_or_an_exception(hostile: Hostile) -> None:
    # Every answer of the shared HTTP client, in every test of the session, went through the same
    # check (LeakCheck.check_response); these provoke the kinds of error not provoked elsewhere.
    http = hostile.http
    provoked = [
        http.get("/v1/no-such-route"),
        http.delete("/v1/balance", headers=hostile.cast.owner),
        http.post(
            "/v1/orders", content=b"{not json", headers=hostile.cast.owner | {"Idempotency-Key": "bad"}
        ),
        http.post(
            "/v1/orders", json={"quantity": "many"}, headers=hostile.cast.owner | {"Idempotency-Key": "b"}
        ),
        http.post("/v1/auth/otp", json={"phone": "not a phone at all"}),
        http.post("/v1/stamps", headers=hostile.cast.owner),
        http.get("/v1/serials/not-a-serial"),
        http.post(
            "/v1/payments/webhooks/sandbox",
            content=b"\xff\xfe junk",
            headers={"Webhook-Signature": "t=1,v1=0"},
        ),
        http.post("/v1/verify", files={"file": ("x.pdf", b"%PDF-1.7\n" + b"\x00" * 500, "application/pdf")}),
        http.get("/v1/balance", headers={"Authorization": "Bearer " + "A" * 5000}),
    ]
    assert all(r.status_code >= 400 for r in provoked), [
        (r.url.path, r.status_code) for r in provoked if r.status_code < 400
    ]
    assert all(r.status_code < 500 for r in provoked), [(r.url.path, r.status_code) for r in provoked]
    assert hostile.leaks.seen >= len(provoked)
    # The check itself: it does catch what it is for.
    for leaky in (
        'File "/work/main/services/gateway/http_api.py", line 3',
        "upstream 127.0.0.1 said no",
        "KeyError",
    ):
        assert hostile.leaks.problems(leaky), leaky
    with pytest.raises(AssertionError):
        hostile.leaks.check_response(
            httpx.Response(
                500, text="Traceback (most recent call last)", request=httpx.Request("GET", "http://x/")
            )
        )
