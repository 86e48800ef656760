"""`emeterai keys`: the operator's tool for the keys that sign access tokens.

    emeterai keys list                      every key, when it starts to sign, which one signs now
    emeterai keys add [--signs-in 10m]      a new key, signing once its time comes
    emeterai keys retire --kid=KID          remove a key that no longer signs (with "=": a
                                            key id may start with "-")

They work on the key folder (--key-dir, else EMETERAI_JWT_KEY_DIR, else <data dir>/jwt); running
auth replicas reread it every RELOAD_S seconds. Rotation without downtime: add with --signs-in at
least twice that (so every replica publishes the key before any signs with it), wait until it
signs plus the access-token lifetime, then retire the old key. Exit codes: 0 done, 1 refused, 2
bad arguments or settings.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.auth.keys import RELOAD_S, Keyring, KeyringError, generate_key_file, retire_key
from services.common.settings import AuthSettings, SettingsError, load_settings

_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """'90', '90s', '10m', '2h' or '1d'."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 10m, 2h)")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def add_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    keys = commands.add_parser("keys", help="the keys that sign access tokens: list, add, retire")
    keys.add_argument("action", choices=["list", "add", "retire"])
    keys.add_argument("--kid", help="the key to retire, written --kid=KID (key ids may start with -)")
    keys.add_argument(
        "--signs-in",
        default=f"{2 * RELOAD_S}s",
        help=f"when a new key starts to sign (default {2 * RELOAD_S}s: after every replica has it)",
    )
    keys.add_argument("--key-dir", type=Path, help="the key folder (default: EMETERAI_JWT_KEY_DIR)")
    keys.set_defaults(run=run_keys)


def run_keys(args: argparse.Namespace) -> int:
    try:
        directory = args.key_dir or load_settings(AuthSettings).resolved_jwt_key_dir
        delay = parse_duration(args.signs_in)
    except (SettingsError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    try:
        if args.action == "add":
            path = generate_key_file(directory, now + delay)
            print(json.dumps({"added": path.name, "signs_from": (now + delay).isoformat()}))
        elif args.action == "retire":
            if not args.kid:
                print(
                    "retire needs the key id: emeterai keys retire --kid=KID (see `emeterai keys list`)",
                    file=sys.stderr,
                )
                return 2
            print(json.dumps({"retired": retire_key(directory, args.kid, now).name}))
        else:
            keyring = Keyring.load(directory, create_if_empty=False)
            current = keyring.current_at(now).kid
            listed = [
                {
                    "kid": key.kid,
                    "file": key.file_name,
                    "signs_from": key.signs_from.isoformat() if key.signs_from else None,
                    "signing": key.kid == current,
                }
                for key in keyring.keys
            ]
            print(json.dumps(listed, indent=2))
    except KeyringError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0
