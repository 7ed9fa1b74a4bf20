"""The ``gateway`` command line.

Exit codes: 0 success; 1 a runtime failure (database unreachable, user exists); 2 bad usage or
bad configuration. Messages go to stderr, one problem per line, never with a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from gateway.authority import build_master, ensure_signing_keys
from gateway.command import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    Parser,
    iso,
    run_on_database,
)
from gateway.command import connected as _connected
from gateway.command import load as _load
from gateway.command import locate as _locate
from gateway.command import print_table as _print_table
from gateway.config import origins
from gateway.config.loader import Config
from gateway.errors import GatewayError
from gateway.grants.organizations import BadValue, check_email
from gateway.logs import configure_logging
from gateway.passwords import Passwords, check_new_password
from gateway.store import backchannel as logout_store
from gateway.store import clients as client_store
from gateway.store import mail as mail_store
from gateway.store import users as user_store
from gateway.store.errors import (
    InvalidInputError,
    MailAlreadySentError,
    UnknownMailError,
    UnknownUserError,
    UserExistsError,
)
from gateway.store.housekeeping import describe_deleted, housekeep_config
from gateway.store.migrate import MigrationResult, migrate
from gateway.tokens.keys import KeyRing

log = logging.getLogger("gateway.cli")


# --- helpers ----------------------------------------------------------------------------------


async def _prepare_database(config: Config, dsn: str) -> MigrationResult:
    """Apply migrations, synchronise the clients and make sure a signing key exists, once, before
    any worker starts."""
    async with _connected(config, dsn) as conn:
        result = await migrate(conn)
        await client_store.sync_configured_clients(conn, config.clients)
        _, master = build_master(config)
        await ensure_signing_keys(conn, config, master)
    return result


# --- commands ---------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.config.holder import ConfigHolder  # keeps `gateway --help` fast
    from gateway.server import ListenError, check_listen, run_single, run_workers

    listen = {
        key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None
    }
    config = _load(args, {"listen": listen} if listen else None)
    configure_logging(config.gateway.logging.level)
    host, port = config.gateway.listen.host, config.gateway.listen.port
    if args.workers < 1:
        raise CommandError("--workers must be at least 1", EXIT_USAGE)
    if args.workers > 1 and port == 0:
        raise CommandError("--workers > 1 needs a fixed --port", EXIT_USAGE)
    try:
        check_listen(host, port, reuse_port=args.workers > 1)  # before the database starts
    except ListenError as exc:
        raise CommandError(str(exc)) from None
    location = _locate(config)
    try:
        result = asyncio.run(_prepare_database(config, location.dsn))
        log.info("database ready: %s", result.summary())
        if args.workers == 1:
            run_single(ConfigHolder(config), location.dsn, host, port)
        else:
            run_workers(args.workers, config, location.dsn)
    except ListenError as exc:  # taken in the moment since the check
        raise CommandError(str(exc)) from None
    finally:
        location.close()
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    config = _load(args)
    location = _locate(config)
    try:
        result = asyncio.run(_migrate_only(config, location.dsn))
    finally:
        location.close()
    print(result.summary())
    return EXIT_OK


async def _migrate_only(config: Config, dsn: str) -> MigrationResult:
    async with _connected(config, dsn) as conn:
        return await migrate(conn)


def _user_name(args: argparse.Namespace) -> str:
    name: str = args.name_arg
    if not name or len(name) > 128 or any(ord(ch) < 0x21 for ch in name):
        raise CommandError("the user name must be 1 to 128 characters without spaces", EXIT_USAGE)
    return name


def _new_password_hash(args: argparse.Namespace, config: Config) -> str:
    """The argon2id hash of a password read from standard input (``--password-stdin``)."""
    if not args.password_stdin:
        raise CommandError("give the password on standard input with --password-stdin", EXIT_USAGE)
    password = sys.stdin.read()
    password = password.removesuffix("\n").removesuffix("\r")
    problem = check_new_password(password)
    if problem:
        raise CommandError(problem, EXIT_USAGE)
    return Passwords.configured(config.gateway.passwords).hash(password)


def cmd_user_add(args: argparse.Namespace) -> int:
    name = _user_name(args)
    if args.email is not None:
        try:  # the same form as invitations store, so that the two always compare equal
            args.email = check_email(args.email)
        except BadValue as exc:
            raise CommandError(str(exc), EXIT_USAGE) from exc
    config = _load(args)
    password_hash = _new_password_hash(args, config)
    location = _locate(config)
    try:
        asyncio.run(_user_add(config, location.dsn, name, password_hash, args.email, args.name))
    except UserExistsError as exc:
        raise CommandError(f"user {name!r} already exists (or the email is taken)") from exc
    except InvalidInputError as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    finally:
        location.close()
    return EXIT_OK


def cmd_user_update(args: argparse.Namespace) -> int:
    """``user passwd``, ``user lock`` and ``user unlock``."""
    name = _user_name(args)
    action = args.user_command
    config = _load(args)
    password_hash = _new_password_hash(args, config) if action == "passwd" else None
    locked = {"lock": True, "unlock": False}.get(action)
    location = _locate(config)
    try:
        ended = asyncio.run(_user_update(config, location.dsn, name, password_hash, locked))
    except UnknownUserError as exc:
        raise CommandError(f"there is no user {name!r}") from exc
    finally:
        location.close()
    done = {"passwd": "password changed", "lock": "locked", "unlock": "unlocked"}[action]
    print(f"{name}: {done}; {ended} session{'' if ended == 1 else 's'} ended")
    return EXIT_OK


async def _user_update(
    config: Config, dsn: str, username: str, password_hash: str | None, locked: bool | None
) -> int:
    async with _connected(config, dsn) as conn:
        await migrate(conn)
        return await user_store.user_update(conn, username, password_hash, locked, actor="cli")


async def _user_add(
    config: Config,
    dsn: str,
    username: str,
    password_hash: str,
    email: str | None,
    display_name: str | None,
) -> None:
    async with _connected(config, dsn) as conn:
        await migrate(conn)
        await user_store.user_add(conn, username, password_hash, email, display_name)


def cmd_client_list(args: argparse.Namespace) -> int:
    config = _load(args)
    rows = [("CLIENT_ID", "APP", "TYPE", "GRANT TYPES", "ORIGINS")]
    for client in config.clients.values():
        app = client.config
        rows.append(
            (
                client.client_id,
                client.app,
                "public" if app.is_public else "confidential",
                ",".join(_short_grant(g) for g in app.effective_grant_types),
                ",".join(app.javascript_origins) or "-",
            )
        )
    _print_table(rows)
    return EXIT_OK


def cmd_client_check(args: argparse.Namespace) -> int:
    config = _load(args)
    print(f"{len(config.clients)} clients OK ({', '.join(config.clients) or 'none'})")
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    config = _load(args)
    print(
        f"{config.path}: OK ({len(config.clients)} clients, "
        f"{len(config.gateway.routes)} routes, {len(config.sites)} sites, "
        f"{len(config.providers)} provider files)"
    )
    return EXIT_OK


def cmd_origins_list(args: argparse.Namespace) -> int:
    config = _load(args)
    rows = [("ORIGIN", "ALLOWED BY")]
    for found in sorted(origins.grants(config), key=lambda g: (g.origin, g.by)):
        rows.append((found.origin, str(found)))
    _print_table(rows)
    return EXIT_OK


def cmd_origins_check(args: argparse.Namespace) -> int:
    allowed, message = origins.explain(_load(args), args.origin)
    print(message)
    return EXIT_OK if allowed else EXIT_FAILURE


def cmd_origins_edit(args: argparse.Namespace) -> int:
    config = _load(args)
    try:
        print(origins.edit(config, args.client, args.origin, add=args.origins_command == "add"))
    except origins.OriginError as exc:
        raise CommandError(str(exc)) from exc
    return EXIT_OK


def cmd_housekeep(args: argparse.Namespace) -> int:
    """Delete what is over now, in batches, until nothing is left (bounded)."""
    config = _load(args)
    location = _locate(config)
    try:
        deleted, finished = asyncio.run(_housekeep(config, location.dsn))
    finally:
        location.close()
    if not deleted:
        raise CommandError("another gateway is housekeeping right now; try again in a minute")
    print(f"deleted {describe_deleted(deleted)}")
    if not finished:
        print("another gateway took over the rest of the work")
    return EXIT_OK


async def _housekeep(config: Config, dsn: str) -> tuple[dict[str, int], bool]:
    async with _connected(config, dsn) as conn:
        await migrate(conn)
        return await housekeep_config(conn, config)


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    config = _load(args)
    location = _locate(config)
    try:
        ring = asyncio.run(_rotate(config, location.dsn))
    finally:
        location.close()
    newest = max(ring.keys, key=lambda k: k.activated_at)
    print(
        f"signing key {newest.kid} ({newest.alg}) published; it signs from "
        f"{newest.activated_at:%Y-%m-%d %H:%M:%S %Z}"
    )
    return EXIT_OK


async def _rotate(config: Config, dsn: str) -> KeyRing:
    async with _connected(config, dsn) as conn:
        await migrate(conn)
        _, master = build_master(config)
        return await ensure_signing_keys(conn, config, master, force=True)


# The columns every outbox table ends with (_outbox_command fills them).
OUTBOX_STATE_COLUMNS = ("STATE", "ATTEMPTS", "LAST ERROR", "NEXT ATTEMPT", "CREATED")
OUTBOX_COLUMNS = ("ID", "KIND", "RECIPIENT", *OUTBOX_STATE_COLUMNS)


def cmd_mail_outbox(args: argparse.Namespace) -> int:
    """The outbox: messages not sent yet (queued, being sent, failed), or ``--all``."""
    return _outbox_command(
        args,
        lambda conn: mail_store.mail_outbox(conn, include_sent=args.all, limit=args.limit),
        _outbox_json,
        OUTBOX_COLUMNS,
        lambda e: (str(e.id), e.kind, e.recipient),
        "messages",
    )


def _outbox_command(
    args: argparse.Namespace,
    fetch: Callable[[Any], Awaitable[Sequence[Any]]],
    to_json: Callable[[Any], dict[str, Any]],
    columns: tuple[str, ...],
    first_cells: Callable[[Any], tuple[str, ...]],
    what: str,
) -> int:
    """``gateway mail outbox`` and ``gateway logout outbox``: entries with a state, attempts, the
    last error and times, as a table or JSON."""
    if args.limit < 1:
        raise CommandError("--limit must be at least 1", EXIT_USAGE)

    async def on(_config: Config, conn: Any) -> Sequence[Any]:
        return await fetch(conn)

    entries = run_on_database(args, on)
    if args.json:
        print(json.dumps([to_json(e) for e in entries], indent=2))
        return EXIT_OK
    if not entries:
        print(f"the outbox holds no {what}" if args.all else f"no {what} waiting or failed")
        return EXIT_OK
    rows = [columns]
    for e in entries:
        rows.append(
            (
                *first_cells(e),
                e.state,
                str(e.attempts),
                _cell(e.last_error, 60),
                _when(e.next_attempt_at),
                _when(e.created_at),
            )
        )
    _print_table(rows)
    if len(entries) == args.limit:
        print(f"(the first {args.limit}; see more with --limit)", file=sys.stderr)
    return EXIT_OK


def _outbox_json(entry: mail_store.OutboxEntry) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "kind": entry.kind,
        "recipient": entry.recipient,
        "state": entry.state,
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "next_attempt_at": iso(entry.next_attempt_at),
        "created_at": iso(entry.created_at),
        "sent_at": iso(entry.sent_at),
        "failed_at": iso(entry.failed_at),
    }


def _when(moment: datetime | None) -> str:
    """A time of the outbox (UTC, as the database gives it) in a table cell."""
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S}Z" if moment is not None else "-"


def _cell(text: str | None, width: int) -> str:
    if not text:
        return "-"
    return text if len(text) <= width else text[: width - 3] + "..."


LOGOUT_COLUMNS = ("ID", "CLIENT", "SESSION", *OUTBOX_STATE_COLUMNS)


def cmd_logout_outbox(args: argparse.Namespace) -> int:
    """Back-channel logouts not delivered yet (queued, being sent, failed), or ``--all``."""
    return _outbox_command(
        args,
        lambda conn: logout_store.backchannel_outbox(conn, include_done=args.all, limit=args.limit),
        _logout_json,
        LOGOUT_COLUMNS,
        lambda e: (str(e.id), e.client_id, str(e.session_id)),
        "logouts",
    )


def _logout_json(entry: logout_store.LogoutEntry) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "client_id": entry.client_id,
        "session_id": str(entry.session_id),
        "user_id": str(entry.user_id),
        "reason": entry.reason,
        "state": entry.state,
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "next_attempt_at": iso(entry.next_attempt_at),
        "created_at": iso(entry.created_at),
        "sent_at": iso(entry.sent_at),
        "failed_at": iso(entry.failed_at),
    }


def cmd_mail_retry(args: argparse.Namespace) -> int:
    """Queue a message again now (``ID``), or every failed one (``--failed``)."""
    mail_id: UUID | None = None
    if args.id is not None:
        try:
            mail_id = UUID(args.id)
        except ValueError:
            raise CommandError(
                f"{args.id!r} is not a message id (see: gateway mail outbox)", EXIT_USAGE
            ) from None
    config = _load(args)
    location = _locate(config)
    try:
        count = asyncio.run(_mail_retry(config, location.dsn, mail_id))
    except UnknownMailError as exc:
        raise CommandError(f"there is no message {mail_id} (see: gateway mail outbox)") from exc
    except MailAlreadySentError as exc:
        raise CommandError(
            f"message {mail_id} was sent or is being sent right now: nothing to retry"
        ) from exc
    finally:
        location.close()
    if mail_id is not None:
        print(f"message {mail_id} queued again; it goes out within seconds")
    elif count:
        print(f"{count} failed message{'' if count == 1 else 's'} queued again")
    else:
        print("no failed messages")
    return EXIT_OK


async def _mail_retry(config: Config, dsn: str, mail_id: UUID | None) -> int:
    async with _connected(config, dsn) as conn:
        await migrate(conn)
        return await mail_store.mail_requeue(conn, mail_id)


def _short_grant(grant: str) -> str:
    return grant.rsplit(":", 1)[-1]


# --- parser -----------------------------------------------------------------------------------


def port_number(value: str) -> int:
    """``--port``: checked like ``listen.port`` (0 to 65535), never wrapped around."""
    try:
        port = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0 to 65535)")
    return port


def host_name(value: str) -> str:
    if not value or any(ch.isspace() or ch in "/?#@" for ch in value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a host name or address")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="configuration file (default: $GATEWAY_CONFIG or conf/gateway.json)",
    )
    parser = Parser(
        prog="gateway",
        description="OAuth 2.0 / OpenID Connect authorization server and SPA token handler.",
        parents=[common],
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )

    serve = sub.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--host", type=host_name, help="listen address (default: listen.host)")
    serve.add_argument("--port", type=port_number, help="listen port (default: listen.port)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    serve.set_defaults(func=cmd_serve)

    mig = sub.add_parser("migrate", parents=[common], help="apply sql/ to the database")
    mig.set_defaults(func=cmd_migrate)

    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(
        dest="user_command", required=True, metavar="ACTION", parser_class=Parser
    )
    add = user_sub.add_parser("add", parents=[common], help="create a user")
    add.add_argument("name_arg", metavar="NAME", help="user name (login)")
    add.add_argument("--email")
    add.add_argument("--name", help="display name")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    add.set_defaults(func=cmd_user_add)
    passwd = user_sub.add_parser(
        "passwd", parents=[common], help="set a new password; ends the user's sessions"
    )
    passwd.add_argument("name_arg", metavar="NAME", help="user name (login)")
    passwd.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    passwd.set_defaults(func=cmd_user_update)
    for action, text in (
        ("lock", "refuse the user's sign-ins and end their sessions"),
        ("unlock", "allow the user to sign in again"),
    ):
        toggle = user_sub.add_parser(action, parents=[common], help=text)
        toggle.add_argument("name_arg", metavar="NAME", help="user name (login)")
        toggle.set_defaults(func=cmd_user_update, password_stdin=False)

    client = sub.add_parser("client", help="clients as loaded from conf/oauth2")
    client_sub = client.add_subparsers(
        dest="client_command", required=True, metavar="ACTION", parser_class=Parser
    )
    client_sub.add_parser("list", parents=[common], help="list clients").set_defaults(
        func=cmd_client_list
    )
    client_sub.add_parser("check", parents=[common], help="validate clients").set_defaults(
        func=cmd_client_check
    )

    orig = sub.add_parser("origins", help="the CORS origin allowlist")
    orig_sub = orig.add_subparsers(
        dest="origins_command", required=True, metavar="ACTION", parser_class=Parser
    )
    orig_sub.add_parser(
        "list", parents=[common], help="allowed origins and who allows them"
    ).set_defaults(func=cmd_origins_list)
    for action, text in (("add", "allow an origin for a client"), ("remove", "stop allowing it")):
        edit = orig_sub.add_parser(action, parents=[common], help=text)
        edit.add_argument("origin", metavar="ORIGIN")
        edit.add_argument("--client", required=True, metavar="ID", help="client id")
        edit.set_defaults(func=cmd_origins_edit)
    check = orig_sub.add_parser("check", parents=[common], help="is an origin allowed, and why")
    check.add_argument("origin", metavar="ORIGIN")
    check.set_defaults(func=cmd_origins_check)

    keys_parser = sub.add_parser("keys", help="signing keys")
    keys_sub = keys_parser.add_subparsers(
        dest="keys_command", required=True, metavar="ACTION", parser_class=Parser
    )
    keys_sub.add_parser(
        "rotate", parents=[common], help="publish a new signing key (it signs an hour later)"
    ).set_defaults(func=cmd_keys_rotate)

    sub.add_parser(
        "housekeep",
        parents=[common],
        help="delete sessions, tokens and codes that are over (serve does it hourly)",
    ).set_defaults(func=cmd_housekeep)

    from gateway import cli_org  # it builds on this module's helpers

    cli_org.add_parsers(sub, common, Parser)
    from gateway import cli_session

    cli_session.add_parsers(sub, common, Parser)
    mail = sub.add_parser("mail", help="the outgoing mail queue")
    mail_sub = mail.add_subparsers(
        dest="mail_command", required=True, metavar="ACTION", parser_class=Parser
    )
    outbox = mail_sub.add_parser(
        "outbox", parents=[common], help="messages waiting or failed (--all: sent ones too)"
    )
    outbox.add_argument("--all", action="store_true", help="include sent messages")
    outbox.add_argument("--json", action="store_true", help="a JSON array instead of a table")
    outbox.add_argument(
        "--limit", type=int, default=1000, metavar="N", help="at most N messages (default: 1000)"
    )
    outbox.set_defaults(func=cmd_mail_outbox)
    retry = mail_sub.add_parser(
        "retry", parents=[common], help="send a queued or failed message now, or every failed one"
    )
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", metavar="ID", help="the message id (gateway mail outbox)")
    which.add_argument("--failed", action="store_true", help="every failed message")
    retry.set_defaults(func=cmd_mail_retry)

    logout = sub.add_parser("logout", help="back-channel logouts to client applications")
    logout_sub = logout.add_subparsers(
        dest="logout_command", required=True, metavar="ACTION", parser_class=Parser
    )
    logout_outbox = logout_sub.add_parser(
        "outbox",
        parents=[common],
        help="logout tokens waiting or failed (--all: delivered and skipped ones too)",
    )
    logout_outbox.add_argument("--all", action="store_true", help="include delivered ones")
    logout_outbox.add_argument(
        "--json", action="store_true", help="a JSON array instead of a table"
    )
    logout_outbox.add_argument(
        "--limit", type=int, default=1000, metavar="N", help="at most N logouts (default: 1000)"
    )
    logout_outbox.set_defaults(func=cmd_logout_outbox)

    cfg = sub.add_parser("config", help="configuration")
    cfg_sub = cfg.add_subparsers(
        dest="config_command", required=True, metavar="ACTION", parser_class=Parser
    )
    cfg_sub.add_parser("check", parents=[common], help="validate all configuration").set_defaults(
        func=cmd_config_check
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
