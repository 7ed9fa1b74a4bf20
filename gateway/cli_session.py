"""``gateway session ...`` and ``gateway audit``: people's sessions and the audit log from the
command line (issue 14 items 3 and 4).

Exit codes as for every command: 0 done; 1 the database said no (no such user, no such live
session); 2 bad usage (a session id that is not one, a bad ``--since``). Messages go to stderr
in one line.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from gateway.command import EXIT_OK, EXIT_USAGE, CommandError, iso, run_on_database
from gateway.command import print_table as _print_table
from gateway.config.loader import Config
from gateway.grants.audit_log import audit_json
from gateway.grants.devices import describe_device
from gateway.grants.sessions import ENDED_BY_OPERATOR
from gateway.store import audit as audit_store
from gateway.store import sessions as store
from gateway.store.errors import InvalidInputError, UnknownUserError

ACTOR = "cli"
RELATIVE = re.compile(r"^(\d{1,6})([smhd])$")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
KIND = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


def _run(args: argparse.Namespace, work: Any) -> Any:
    """Run ``work(conn)`` against the configured database; errors as one line."""

    async def on(_config: Config, conn: Any) -> Any:
        return await work(conn)

    try:
        return run_on_database(args, on)
    except UnknownUserError as exc:
        raise CommandError(f"there is no user {getattr(args, 'user', '')!r}") from exc
    except InvalidInputError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc


async def _user_id(conn: Any, name: str) -> UUID:
    account = await store.user_lookup(conn, name)
    if account is None:
        raise UnknownUserError("there is no such user")
    return account.user_id


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


# --- gateway session ----------------------------------------------------------------------------


def cmd_session_list(args: argparse.Namespace) -> int:
    async def work(conn: Any) -> list[store.SessionInfo]:
        return await store.session_list(
            conn, await _user_id(conn, args.user), include_over=args.all
        )

    found: list[store.SessionInfo] = _run(args, work)
    if args.json:
        for s in found:
            print(json.dumps(_session_json(s)))
        return EXIT_OK
    if not found:
        print(
            f"{args.user} has no live sessions" + ("" if args.all else " (--all: ended ones too)")
        )
        return EXIT_OK
    rows = [("ID", "CLIENT", "DEVICE", "ADDRESS", "STARTED", "LAST USED", "STATE")]
    for s in found:
        state = s.state if s.revoked_reason is None else f"{s.state} ({s.revoked_reason})"
        rows.append((str(s.session_id), s.client_id, describe_device(s.user_agent), s.ip or "-",
                     _when(s.created_at), _when(s.last_seen_at), state))  # fmt: skip
    _print_table(rows)
    return EXIT_OK


def _session_json(s: store.SessionInfo) -> dict[str, Any]:
    return {
        "id": str(s.session_id),
        "client_id": s.client_id,
        "app": s.app,
        "kind": s.kind,
        "device": describe_device(s.user_agent),
        "user_agent": s.user_agent,
        "address": s.ip,
        "started": iso(s.created_at),
        "last_used": iso(s.last_seen_at),
        "expires": iso(s.expires_at),
        "ended": iso(s.revoked_at),
        "ended_reason": s.revoked_reason,
        "state": s.state,
    }


def cmd_session_end(args: argparse.Namespace) -> int:
    if args.all:
        if args.user is None or args.session_id is not None:
            raise CommandError("--all goes with --user USER and no session id", EXIT_USAGE)
        return _end_all(args)
    if args.session_id is None or args.user is not None:
        raise CommandError("name a session id (gateway session list USER), or --user USER --all",
                           EXIT_USAGE)  # fmt: skip
    try:
        session_id = UUID(args.session_id)
    except ValueError as exc:
        raise CommandError(f"{args.session_id!r} is not a session id", EXIT_USAGE) from exc

    async def work(conn: Any) -> bool:
        return await store.session_end(conn, session_id, user_id=None, reason=ENDED_BY_OPERATOR,
                                       actor=ACTOR, ip=None, user_agent=None)  # fmt: skip

    if not _run(args, work):
        raise CommandError(f"there is no session {session_id} to end (unknown, or ended already)")
    print(f"session {session_id} ended")
    return EXIT_OK


def _end_all(args: argparse.Namespace) -> int:
    async def work(conn: Any) -> int:
        user_id = await _user_id(conn, args.user)
        return await store.session_end_all(conn, user_id, keep=None, reason=ENDED_BY_OPERATOR,
                                           actor=ACTOR, ip=None, user_agent=None)  # fmt: skip

    ended: int = _run(args, work)
    print(f"{args.user}: {ended} session{'' if ended == 1 else 's'} ended")
    return EXIT_OK


# --- gateway audit ------------------------------------------------------------------------------


def parse_since(value: str, now: datetime) -> datetime:
    """``2026-12-01`` (UTC midnight), ``2026-12-01T10:00:00+01:00``, or ``90m``/``1h``/``7d``
    before ``now``."""
    relative = RELATIVE.match(value)
    if relative:
        return now - timedelta(**{UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"--since {value!r} is neither a date (2026-12-01) nor an age (30m, 1h, 7d)", EXIT_USAGE
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def cmd_audit(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 100_000:
        raise CommandError("--limit must be 1 to 100000", EXIT_USAGE)
    kinds: tuple[str, ...] | None = None
    if args.type is not None:
        kinds = tuple(k.strip() for k in args.type.split(",") if k.strip())
        bad = [k for k in kinds if not KIND.match(k)]
        if bad or not kinds:
            raise CommandError(
                f"--type {args.type!r} is not a list of event types "
                "(e.g. login.failure,refresh; see docs/audit.md)",
                EXIT_USAGE,
            )
    since = parse_since(args.since, datetime.now(UTC)) if args.since is not None else None

    async def work(conn: Any) -> list[audit_store.AuditEvent]:
        user_id = await _user_id(conn, args.user) if args.user is not None else None
        return await audit_store.audit_list(
            conn, user_id=user_id, kinds=kinds, since=since, limit=args.limit
        )

    events: list[audit_store.AuditEvent] = _run(args, work)
    if args.json:
        for event in events:
            print(json.dumps(audit_json(event), ensure_ascii=False))
        return EXIT_OK
    if not events:
        print("no events")
        return EXIT_OK
    rows = [("TIME", "TYPE", "USER", "CLIENT", "ACTOR", "ADDRESS", "DEVICE", "DETAIL")]
    for e in events:
        detail = ",".join(f"{k}={v}" for k, v in sorted(e.detail.items()) if v is not None)
        rows.append((_when(e.at), e.kind, e.username or (str(e.user_id) if e.user_id else "-"),
                     e.client_id or "-", e.actor or "-", e.ip or "-",
                     describe_device(e.user_agent) if e.user_agent else "-",
                     detail or "-"))  # fmt: skip
    _print_table(rows)
    return EXIT_OK


def add_parsers(sub: Any, common: argparse.ArgumentParser, parser_class: type) -> None:
    session = sub.add_parser("session", help="people's sessions")
    session_sub = session.add_subparsers(
        dest="session_command", required=True, metavar="ACTION", parser_class=parser_class
    )
    listing = session_sub.add_parser("list", parents=[common], help="a user's sessions")
    listing.add_argument("user", metavar="USER", help="user name or email")
    listing.add_argument("--all", action="store_true", help="ended and expired ones too")
    listing.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    listing.set_defaults(func=cmd_session_list)
    end = session_sub.add_parser(
        "end", parents=[common], help="end a session, or every session of a user (--user --all)"
    )
    end.add_argument("session_id", nargs="?", metavar="SESSION_ID")
    end.add_argument("--user", metavar="USER", help="with --all: every session of this user")
    end.add_argument("--all", action="store_true", help="every live session of --user")
    end.set_defaults(func=cmd_session_end)

    audit = sub.add_parser("audit", parents=[common], help="read the audit log")
    audit.add_argument("--user", metavar="NAME", help="events of this user (name or email)")
    audit.add_argument("--type", metavar="TYPE[,TYPE]", help="only these event types")
    audit.add_argument("--since", metavar="WHEN", help="a date (2026-12-01) or an age (1h, 7d)")
    audit.add_argument("--limit", type=int, default=100, metavar="N",
                       help="the newest N events (default: 100)")  # fmt: skip
    audit.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    audit.set_defaults(func=cmd_audit)
