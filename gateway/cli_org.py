"""``gateway org ...``: organisations, members and invitations from the command line.

Exit codes as for every command: 0 done; 1 the database said no (unknown organisation, alias
taken, already a member, nothing pending); 2 bad usage (an alias, email or role that cannot be
used). Messages go to stderr in one line.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway import errors
from gateway.authority import build_master
from gateway.command import EXIT_OK, EXIT_USAGE, CommandError, run_on_database
from gateway.command import print_table as _print_table
from gateway.config.loader import Config
from gateway.errors import InvitationUnusable, OrganizationError
from gateway.grants import organizations as orgs
from gateway.store import organizations as store
from gateway.themes import Themes

ACTOR = "cli"


def _run(args: argparse.Namespace, work: Any) -> Any:
    """Run ``work(config, conn)`` against the configured database; errors as one line."""
    try:
        return run_on_database(args, work)
    except orgs.BadValue as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc
    except (OrganizationError, InvitationUnusable) as exc:
        raise CommandError(_explain(exc, args)) from exc


def _explain(exc: Exception, args: argparse.Namespace) -> str:
    alias = getattr(args, "alias", "")
    if isinstance(exc, errors.UnknownOrganizationError):
        return f"there is no organisation {alias!r} (see: gateway org list)"
    if isinstance(exc, errors.OrganizationExistsError):
        return f"an organisation with the alias {alias!r} exists already"
    if isinstance(exc, errors.AlreadyMemberError):
        return f"{args.email} is a member of {alias!r} already"
    if isinstance(exc, errors.NotMemberError):
        return f"{args.user!r} is not a member of {alias!r}"
    if isinstance(exc, errors.NoPendingInvitationError):
        return f"there is no pending invitation of {args.email} to {alias!r}"
    return str(exc)


def cmd_org_add(args: argparse.Namespace) -> int:
    try:
        alias = orgs.check_alias(args.alias)
        name = orgs.check_name(args.name)
        domains = tuple(dict.fromkeys(orgs.check_domain(d) for d in args.domain or ()))
    except orgs.BadValue as exc:
        raise CommandError(str(exc), EXIT_USAGE) from exc

    async def work(_config: Config, conn: Any) -> None:
        await store.org_add(conn, alias, name, domains, ACTOR)

    _run(args, work)
    print(f"organisation {alias} added ({name})")
    return EXIT_OK


def cmd_org_list(args: argparse.Namespace) -> int:
    async def work(_config: Config, conn: Any) -> list[store.Organization]:
        return await store.org_list(conn)

    found: list[store.Organization] = _run(args, work)
    if args.json:
        print(json.dumps([orgs.organization_json(o) for o in found], indent=2))
        return EXIT_OK
    if not found:
        print("no organisations (add one: gateway org add ALIAS --name NAME)")
        return EXIT_OK
    rows = [("ALIAS", "NAME", "MEMBERS", "PENDING INVITATIONS", "DOMAINS")]
    for o in found:
        rows.append((o.alias, o.name, str(o.members), str(o.pending), ",".join(o.domains) or "-"))
    _print_table(rows)
    return EXIT_OK


def cmd_org_show(args: argparse.Namespace) -> int:
    alias = args.alias

    async def work(
        _config: Config, conn: Any
    ) -> tuple[store.Organization | None, list[store.Member], list[store.Invitation]]:
        members = await store.org_members(conn, alias)  # GO002 for an unknown one
        invitations = await store.org_invitations(conn, alias, include_all=False)
        return await store.org_get(conn, alias), members, invitations

    organization, members, invitations = _run(args, work)
    assert organization is not None
    if args.json:
        body = orgs.organization_json(organization) | {
            "members": [
                {"username": m.username, "email": m.email, "name": m.name, "role": m.role}
                for m in members
            ],
            "invitations": [
                {"email": i.email, "role": i.role, "expires_at": i.expires_at.isoformat()}
                for i in invitations
            ],
        }
        print(json.dumps(body, indent=2))
        return EXIT_OK
    print(f"{organization.alias}: {organization.name}")
    if organization.domains:
        print(f"domains: {', '.join(organization.domains)}")
    print(f"\nmembers ({len(members)}):")
    if members:
        _print_table(
            [("USER", "EMAIL", "ROLE", "JOINED")]
            + [
                (m.username, m.email or "-", m.role, m.joined_at.strftime("%Y-%m-%d"))
                for m in members
            ]
        )
    print(f"\npending invitations ({len(invitations)}):")
    if invitations:
        _print_table(
            [("EMAIL", "ROLE", "CLIENT", "INVITED BY", "EXPIRES")]
            + [
                (
                    i.email,
                    i.role,
                    i.client_id or "-",
                    i.invited_by,
                    i.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
                )
                for i in invitations
            ]
        )
    return EXIT_OK


def cmd_org_invite(args: argparse.Namespace) -> int:
    async def work(config: Config, conn: Any) -> orgs.NewInvitation:
        mail = orgs.InvitationMail(
            master=build_master(config)[1],
            theme=Themes(config.gateway_theme_dir, config.site_theme_dirs).theme(),
            lang=args.lang,
        )
        return await orgs.invite(
            conn,
            config,
            alias=args.alias,
            email=args.email,
            role=args.role,
            client_id=args.client,
            actor=ACTOR,
            mail=mail,
        )

    made: orgs.NewInvitation = _run(args, work)
    again = " (the earlier invitation of this email no longer works)" if made.replaced else ""
    print(f"invited {made.email} to {made.alias} as {made.role}{again}")
    print(f"expires: {made.expires_at.strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"email: queued as {made.mail_id}; the running gateway sends it (gateway mail outbox)")
    print(f"link: {made.link}")
    return EXIT_OK


def cmd_org_revoke_invite(args: argparse.Namespace) -> int:
    async def work(_config: Config, conn: Any) -> int:
        return await store.org_revoke_invite(conn, args.alias, args.email.strip(), ACTOR)

    _run(args, work)
    print(f"the invitation of {args.email} to {args.alias} no longer works")
    return EXIT_OK


def cmd_org_remove_member(args: argparse.Namespace) -> int:
    async def work(_config: Config, conn: Any) -> None:
        await store.org_remove_member(conn, args.alias, args.user, ACTOR)

    _run(args, work)
    print(f"{args.user} is no longer a member of {args.alias}")
    return EXIT_OK


def cmd_org_remove(args: argparse.Namespace) -> int:
    async def work(_config: Config, conn: Any) -> None:
        await store.org_remove(conn, args.alias, ACTOR)

    _run(args, work)
    print(f"organisation {args.alias} removed; its members left it, its invitations no longer work")
    return EXIT_OK


def add_parsers(sub: Any, common: argparse.ArgumentParser, parser_class: type) -> None:
    """``gateway org ACTION ...``."""
    org = sub.add_parser("org", help="organisations, members and invitations")
    org_sub = org.add_subparsers(
        dest="org_command", required=True, metavar="ACTION", parser_class=parser_class
    )
    add = org_sub.add_parser("add", parents=[common], help="create an organisation")
    add.add_argument("alias", metavar="ALIAS", help="unique, lower-case, e.g. acme")
    add.add_argument("--name", required=True, help="display name, e.g. 'Acme Ltd'")
    add.add_argument("--domain", action="append", metavar="D", help="an email domain (repeatable)")
    add.set_defaults(func=cmd_org_add)
    listing = org_sub.add_parser("list", parents=[common], help="list organisations")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_org_list)
    show = org_sub.add_parser(
        "show", parents=[common], help="an organisation's members and pending invitations"
    )
    show.add_argument("alias", metavar="ALIAS")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_org_show)
    invite = org_sub.add_parser(
        "invite", parents=[common], help="invite someone by email (prints the link)"
    )
    invite.add_argument("alias", metavar="ALIAS")
    invite.add_argument("email", metavar="EMAIL")
    invite.add_argument("--role", choices=orgs.ROLES, default="member")
    invite.add_argument("--client", metavar="CLIENT_ID", help="the application to go to afterwards")
    invite.add_argument("--lang", choices=("en", "ru"), default="en", help="the email's language")
    invite.set_defaults(func=cmd_org_invite)
    revoke = org_sub.add_parser(
        "revoke-invite", parents=[common], help="withdraw a pending invitation"
    )
    revoke.add_argument("alias", metavar="ALIAS")
    revoke.add_argument("email", metavar="EMAIL")
    revoke.set_defaults(func=cmd_org_revoke_invite)
    remove_member = org_sub.add_parser(
        "remove-member", parents=[common], help="remove a member (user name or email)"
    )
    remove_member.add_argument("alias", metavar="ALIAS")
    remove_member.add_argument("user", metavar="USER")
    remove_member.set_defaults(func=cmd_org_remove_member)
    remove = org_sub.add_parser(
        "remove", parents=[common], help="remove an organisation (its invitations stop working)"
    )
    remove.add_argument("alias", metavar="ALIAS")
    remove.set_defaults(func=cmd_org_remove)
