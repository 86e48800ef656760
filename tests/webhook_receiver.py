"""A distributor's callback endpoint for tests: a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Received:
    path: str
    # Header names in lower case.
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    """Records every request and answers with the statuses in `answers`, in turn, then 200. A 3xx
    answer points to /stolen, which a client following redirects would then ask for."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.received.append(Received(self.path, headers, body))
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/stolen")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                """Quiet: the test reads what was received, not the server's access log."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/callbacks") -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{path}"

    def wait_for(self, count: int, timeout_s: float = 120.0) -> list[Received]:
        """The requests received, once there are at least `count`; fails after timeout_s."""
        return wait_until(lambda: self.received if len(self.received) >= count else None, timeout_s)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def wait_until(check: Callable[[], T | None], timeout_s: float) -> T:
    """check()'s first truthy answer, polling for at most timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"nothing after {timeout_s} s"
        time.sleep(0.05)
