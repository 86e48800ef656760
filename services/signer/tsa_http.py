"""Our timestamp authority over HTTP (RFC 3161 section 3.4): POST a query, get a reply.

`python -m services.signer.tsa_http [--listen HOST:PORT] [--key F --chain F] [--policy OID]`
serves the configured TSA key, or in dev mode the development PKI's TSA. Any RFC 3161 client
works against it: ours (`tsa_client.HttpTimestampClient`), pyHanko's, `openssl ts` with curl.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from services.common.settings import SettingsError, SignerSettings, load_settings
from services.signer.keys import KeySpec, load_identity
from services.signer.pki import PkiError, ensure_dev_pki
from services.signer.tsa import DEV_TSA_POLICY_OID, TimestampAuthority
from services.signer.tsa_client import QUERY_TYPE, REPLY_TYPE

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1:8318"
# A TimeStampReq is a digest and a few small fields; anything much bigger is not one.
MAX_REQUEST_BYTES = 16 * 1024


def build_app(authority: TimestampAuthority) -> Starlette:
    """The ASGI app: POST / takes application/timestamp-query; GET /health says ok."""

    async def timestamp(request: Request) -> Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != QUERY_TYPE:
            return PlainTextResponse(f"send a DER TimeStampReq as {QUERY_TYPE}", status_code=415)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_REQUEST_BYTES:
                return PlainTextResponse("a timestamp query is at most 16 KiB", status_code=413)
        # Signing takes the CPU (and a PKCS#11 key its lock): keep the event loop free.
        reply = await run_in_threadpool(authority.respond, bytes(body))
        return Response(reply, media_type=REPLY_TYPE)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/", timestamp, methods=["POST"]), Route("/health", health, methods=["GET"])]
    )


@dataclass(frozen=True)
class TsaServerConfig:
    """What `serve` needs; `key` None means the development PKI's TSA under `dev_pki_dir`."""

    address: str = DEFAULT_ADDRESS
    key: KeySpec | None = None
    policy_oid: str = DEV_TSA_POLICY_OID
    dev_pki_dir: Path = Path(".emeterai/pki")
    log_level: str = "INFO"


def load_authority(config: TsaServerConfig) -> TimestampAuthority:
    if config.key is not None:
        identity = load_identity(config.key)
    else:
        identity = ensure_dev_pki(config.dev_pki_dir).load_tsa_identity()
    return TimestampAuthority(identity, policy_oid=config.policy_oid)


def bind(address: str) -> socket.socket:
    """A listening socket for HOST:PORT; port 0 picks a free one (see `getsockname()`)."""
    host, _, port = address.rpartition(":")
    sock = socket.create_server((host.strip("[]"), int(port)), reuse_port=False)
    sock.set_inheritable(True)
    return sock


def serve(config: TsaServerConfig) -> None:
    """Serve until SIGINT or SIGTERM; uvicorn finishes requests in flight first."""
    app = build_app(load_authority(config))
    sock = bind(config.address)
    host, port = sock.getsockname()[:2]
    print(f"timestamp authority listening on http://{host}:{port}/", flush=True)
    server = uvicorn.Server(
        uvicorn.Config(
            app, log_level=config.log_level.lower(), access_log=False, lifespan="off", server_header=False
        )
    )
    server.run(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.signer.tsa_http", description=__doc__)
    parser.add_argument("--listen", default=DEFAULT_ADDRESS, help=f"HOST:PORT, default {DEFAULT_ADDRESS}")
    parser.add_argument("--key", type=Path, help="PEM private key of the TSA certificate")
    parser.add_argument("--chain", type=Path, help="PEM chain, TSA certificate first")
    parser.add_argument("--policy", default=DEV_TSA_POLICY_OID, help="TSA policy OID")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(SignerSettings)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    if (args.key is None) != (args.chain is None):
        parser.error("--key and --chain go together")
    if args.key is None and not settings.is_dev:
        parser.error("production mode needs the TSA's --key and --chain")
    logging.basicConfig(level=settings.log_level)
    config = TsaServerConfig(
        address=args.listen,
        key=KeySpec("pem", key_path=args.key, chain_path=args.chain) if args.key else None,
        policy_oid=args.policy,
        dev_pki_dir=settings.pki_dir,
        log_level=settings.log_level,
    )
    try:
        serve(config)
    except PkiError as exc:
        print(f"cannot start the timestamp authority: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
