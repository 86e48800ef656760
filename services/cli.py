"""The `emeterai` command: run the stack locally, and operator tasks."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from emeterai.v1 import accounts_pb2, auth_service_pb2, auth_service_pb2_grpc, quota_service_pb2_grpc
from services.auth.cli import add_commands as add_auth_commands
from services.auth.store import create_auth_engine
from services.common.clients import ServiceTokenSource, service_channel
from services.gateway.records import credential_json, timestamp_json
from services.quota.cli import add_commands as add_quota_commands
from services.quota.cli import run_db
from services.signer.cli import add_commands as add_signer_commands
from services.stack import Stack, StackLayout, read_stack_env, run_until_stopped

DEFAULT_DATA_DIR = Path(".emeterai")


def _up(args: argparse.Namespace) -> int:
    if args.signers < 1:
        print("--signers must be at least 1", file=sys.stderr)
        return 2
    host, _, base = args.signer_base_address.rpartition(":")
    signers = (
        tuple(a.strip() for a in args.signer_addresses.split(","))
        if args.signer_addresses
        else tuple(f"{host}:{int(base) + i}" for i in range(args.signers))
    )
    layout = StackLayout(
        data_dir=args.data_dir,
        http_address=args.http_address,
        grpc_address=args.grpc_address,
        auth_address=args.auth_address,
        quota_address=args.quota_address,
        signer_addresses=signers,
    )
    stack = Stack(layout)
    try:
        stack.start()
    except RuntimeError as exc:
        print(f"could not start: {exc}", file=sys.stderr)
        return 1
    data_dir = layout.data_dir.resolve()
    print(
        "e-meterai is running (development mode)\n"
        f"  HTTP API               {layout.public_url}  (docs: {layout.public_url}/docs)\n"
        f"  distributor gRPC       {layout.grpc_address}\n"
        f"  auth {layout.auth_address}, quota {layout.quota_address}, "
        f"signers {', '.join(layout.signer_addresses)}\n"
        f"  data and logs          {data_dir}\n"
        "Press Ctrl-C to stop.",
        flush=True,
    )
    return run_until_stopped(stack)


# The stack's services an operator tool calls: the stub and the address variable (with its default).
_SERVICES: dict[str, tuple[Any, str, str]] = {
    "auth": (auth_service_pb2_grpc.AuthServiceStub, "EMETERAI_AUTH_ADDRESS", "127.0.0.1:50061"),
    "quota": (quota_service_pb2_grpc.QuotaServiceStub, "EMETERAI_QUOTA_ADDRESS", "127.0.0.1:50062"),
}


async def call_service(
    data_dir: Path, service: str, method: str, request: object, name: str = "operator-cli"
) -> Any:
    """Call one of the stack's internal services with the service identity of the stack in data_dir."""
    env = read_stack_env(data_dir) | {k: v for k, v in os.environ.items() if k.startswith("EMETERAI_")}
    stub_class, variable, default = _SERVICES[service]
    secret = env.get("EMETERAI_SERVICE_SECRET")
    if not secret:
        raise SystemExit(
            "no service secret: set EMETERAI_SERVICE_SECRET or point --data-dir at a running stack"
        )
    tokens = ServiceTokenSource(env.get("EMETERAI_AUTH_ADDRESS", "127.0.0.1:50061"), name, secret)
    channel = service_channel(env.get(variable, default), tokens)
    try:
        return await getattr(stub_class(channel), method)(request, timeout=15)
    finally:
        await channel.close()
        await tokens.close()


def _ask_auth(data_dir: Path, method: str, request: object) -> Any | None:
    """The auth service's answer to an operator's command; None, once the reason is on stderr,
    when it refused or could not be reached."""
    import grpc

    try:
        return asyncio.run(call_service(data_dir, "auth", method, request))
    except grpc.aio.AioRpcError as exc:
        print(f"{exc.code().name}: {exc.details()}", file=sys.stderr)
        return None


def _distributors(args: argparse.Namespace) -> int:
    requests = {
        "create": (
            "CreateDistributor",
            auth_service_pb2.CreateDistributorRequest(display_name=args.name or "", scopes=args.scope or []),
        ),
        "rotate": (
            "RotateDistributorSecret",
            auth_service_pb2.RotateDistributorSecretRequest(client_id=args.client_id or ""),
        ),
        "revoke": (
            "RevokeDistributor",
            auth_service_pb2.RevokeDistributorRequest(client_id=args.client_id or ""),
        ),
        "list": ("ListDistributors", auth_service_pb2.ListDistributorsRequest()),
    }
    method, request = requests[args.action]
    if args.action == "create" and not args.name:
        print("create needs --name", file=sys.stderr)
        return 2
    if args.action in ("rotate", "revoke") and not args.client_id:
        print(f"{args.action} needs --client-id", file=sys.stderr)
        return 2
    reply = _ask_auth(args.data_dir, method, request)
    if reply is None:
        return 1
    if args.action == "list":
        out: object = [credential_json(c) for c in reply.credentials]
    else:
        out = credential_json(
            reply.credential, getattr(reply, "client_secret", ""), getattr(reply, "webhook_secret", "")
        )
    print(json.dumps(out, indent=2))
    return 0


def _operators(args: argparse.Namespace) -> int:
    if args.action in ("add", "remove") and not args.phone:
        print(f"{args.action} needs the operator's phone number", file=sys.stderr)
        return 2
    if args.action == "list":
        method, request = "ListOperators", auth_service_pb2.ListOperatorsRequest()
    else:
        method = "SetOperator"
        request = auth_service_pb2.SetOperatorRequest(phone=args.phone, operator=args.action == "add")
    reply = _ask_auth(args.data_dir, method, request)
    if reply is None:
        return 1
    accounts = list(reply.accounts) if args.action == "list" else [reply.account]
    kinds = {
        value: name.removeprefix("ACCOUNT_KIND_").lower() for name, value in accounts_pb2.AccountKind.items()
    }
    out = [
        {"account_id": a.account_id, "phone": a.phone, "kind": kinds.get(a.kind, "unknown")} for a in accounts
    ]
    print(json.dumps(out if args.action == "list" else out[0], indent=2))
    return 0


def _notice(args: argparse.Namespace) -> int:
    """The degraded-mode notice, from the command line: for when an operator cannot sign in on the
    page (the outage the notice is about may be why)."""
    if args.action == "publish" and not (args.text_id and args.text_en):
        print("publish needs --id and --en: the notice in Indonesian and in English", file=sys.stderr)
        return 2
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        # A container user with no name (no passwd entry, no USER).
        who = str(os.getuid())
    by = f"cli:{who}"
    requests = {
        "show": ("GetNotice", auth_service_pb2.GetNoticeRequest()),
        "publish": (
            "PublishNotice",
            auth_service_pb2.PublishNoticeRequest(
                text_id=args.text_id, text_en=args.text_en, published_by=by
            ),
        ),
        "clear": ("ClearNotice", auth_service_pb2.ClearNoticeRequest(cleared_by=by)),
    }
    method, request = requests[args.action]
    reply = _ask_auth(args.data_dir, method, request)
    if reply is None:
        return 1
    shown = None
    if args.action != "clear" and reply.HasField("notice"):
        notice = reply.notice
        shown = {
            "text_id": notice.text_id,
            "text_en": notice.text_en,
            "published_at": timestamp_json(notice.published_at),
        }
    print(json.dumps({"notice": shown}, indent=2, ensure_ascii=False))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    """Bring the auth and quota databases up to date, e.g. from a Job before a rollout.

    Auth's tables are created when missing (it has no revisions yet); the ledger runs its Alembic
    revisions, as `emeterai db upgrade` does. Exit codes as for `db`: 0 done, 1 a database could
    not be reached or upgraded, 2 no or a bad URL.
    """
    urls = {"auth": args.auth_database_url, "quota": args.quota_database_url}
    if not any(urls.values()):
        print("migrate needs --auth-database-url, --quota-database-url or both", file=sys.stderr)
        return 2
    # Every URL is checked before any database is touched; passwords never reach the output.
    shown: dict[str, str] = {}
    for name, url in urls.items():
        try:
            shown[name] = make_url(url).render_as_string(hide_password=True) if url else ""
        except ArgumentError as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            return 2
    if urls["auth"]:
        try:
            create_auth_engine(urls["auth"]).dispose()
        except ValueError as exc:
            print(f"auth {shown['auth']}: {exc}", file=sys.stderr)
            return 2
        except DBAPIError as exc:
            print(f"auth {shown['auth']}: {exc.orig}", file=sys.stderr)
            return 1
        print(f"auth {shown['auth']}: tables in place")
    if urls["quota"]:
        return run_db(argparse.Namespace(action="upgrade", database_url=urls["quota"]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emeterai", description="e-meterai platform")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run auth, quota, signers and the gateway locally")
    up.add_argument("--signers", type=int, default=1, help="signer processes (default 1)")
    up.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="SQLite, PKI, documents, logs")
    up.add_argument("--http-address", default="127.0.0.1:8080")
    up.add_argument("--grpc-address", default="127.0.0.1:50051", help="distributor gRPC API")
    up.add_argument("--auth-address", default="127.0.0.1:50061")
    up.add_argument("--quota-address", default="127.0.0.1:50062")
    up.add_argument(
        "--signer-base-address", default="127.0.0.1:50071", help="first signer; the rest count up"
    )
    up.add_argument("--signer-addresses", default="", help="comma-separated, instead of counting up")
    up.set_defaults(run=_up)

    distributors = commands.add_parser("distributors", help="manage distributor client credentials")
    distributors.add_argument("action", choices=["create", "rotate", "revoke", "list"])
    distributors.add_argument("--name", help="display name (create)")
    distributors.add_argument("--scope", action="append", help="scope to grant (create; repeatable)")
    distributors.add_argument("--client-id", help="the credential (rotate, revoke)")
    distributors.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    distributors.set_defaults(run=_distributors)

    operators = commands.add_parser("operators", help="grant or withdraw the operator role, by phone number")
    operators.add_argument("action", choices=["add", "remove", "list"])
    operators.add_argument("phone", nargs="?", help="the operator's phone number (add, remove)")
    operators.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    operators.set_defaults(run=_operators)

    notice = commands.add_parser("notice", help="show, publish or clear the degraded-mode notice")
    notice.add_argument("action", choices=["show", "publish", "clear"])
    notice.add_argument("--id", dest="text_id", default="", help="the notice in Indonesian (publish)")
    notice.add_argument("--en", dest="text_en", default="", help="the notice in English (publish)")
    notice.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    notice.set_defaults(run=_notice)

    migrate = commands.add_parser("migrate", help="bring the auth and quota databases up to date")
    migrate.add_argument("--auth-database-url", help="the auth service's database")
    migrate.add_argument("--quota-database-url", help="the quota ledger's database")
    migrate.set_defaults(run=_migrate)
    add_auth_commands(commands)
    add_signer_commands(commands)
    add_quota_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    raise SystemExit(args.run(args))
