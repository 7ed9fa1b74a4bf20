"""``/admin/v1/organizations``: organisations, members and invitations for the applications
that invite from their own screens (seed 002's IoT hub did).

Authorised by a Bearer access token of this gateway holding ``organizations.manage_scope``:
a service client's (client_credentials) may manage every organisation; a user's only those the
user is an ``admin`` of, and may not create organisations. Token problems are RFC 6750 errors
(401 ``invalid_token`` with a challenge, 403 ``insufficient_scope``); the rest are JSON errors
``{"error", "error_description"}``: 400 a body that is not a JSON object, 404 no such
organisation, member or pending invitation, 409 an alias taken or an email of a member already,
422 a value that cannot be used (alias, name, email, role, client). Every change is audited
with its actor in the same transaction (sql/functions/090_organizations.sql). The invitation
link is never in an answer: it proves that whoever opens it reads that mailbox.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import hdrs, web

from gateway.errors import OrganizationError
from gateway.grants import organizations as orgs
from gateway.grants.context import Context
from gateway.http import pages
from gateway.http.context import grant_context
from gateway.http.errors import NO_STORE, json_error, read_body
from gateway.web.tokens import bearer_token

routes = web.RouteTableDef()
BASE = "/admin/v1/organizations"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers={**NO_STORE, **(headers or {})})


async def _caller(request: web.Request) -> tuple[Context, orgs.Actor]:
    ctx = grant_context(request)
    return ctx, await orgs.admin_actor(ctx, await bearer_token(request))


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise _Refused(
            400, "invalid_request", "send a JSON object (Content-Type: application/json)"
        )
    try:
        body = json.loads(await read_body(request))
    except (ValueError, UnicodeDecodeError):
        raise _Refused(400, "invalid_request", "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Refused(400, "invalid_request", "the body must be a JSON object")
    return body


def _text(body: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise _Refused(422, "invalid_value", f"{key} must be a string")
    return value


class _Refused(Exception):  # noqa: N818 - an answer, raised from helpers
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.response = json_error(status, error, description)


def _answer(handler: Any) -> Any:
    """Errors of the organisation store and bad values as JSON; RFC 6750 errors pass on to
    the error middleware."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except _Refused as refused:
            return refused.response
        except orgs.BadValue as exc:
            return json_error(422, "invalid_value", str(exc))
        except OrganizationError as exc:
            return json_error(exc.status, exc.error, str(exc))
        return response

    wrapped.__name__ = handler.__name__
    wrapped.__doc__ = handler.__doc__
    return wrapped


@routes.post(BASE)
@_answer
async def create_organization(request: web.Request) -> web.StreamResponse:
    ctx, actor = await _caller(request)
    body = await _body(request)  # orgs.create_organization refuses a non-service caller
    domains = body.get("domains", [])
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise _Refused(422, "invalid_value", "domains must be a list of domain names")
    created = await orgs.create_organization(
        ctx, actor, _text(body, "alias") or "", _text(body, "name") or "", domains
    )
    return _json(orgs.organization_json(created), 201, {hdrs.LOCATION: f"{BASE}/{created.alias}"})


@routes.get(BASE)
@_answer
async def list_organizations(request: web.Request) -> web.StreamResponse:
    ctx, actor = await _caller(request)
    found = await orgs.organizations_of(ctx, actor)
    return _json({"organizations": [orgs.organization_json(o) for o in found]})


@routes.get(BASE + "/{alias}")
@_answer
async def get_organization(request: web.Request) -> web.StreamResponse:
    ctx, actor = await _caller(request)
    found = await orgs.organization(ctx, actor, request.match_info["alias"])
    return _json(orgs.organization_json(found))


@routes.get(BASE + "/{alias}/members")
@_answer
async def list_members(request: web.Request) -> web.StreamResponse:
    ctx, actor = await _caller(request)
    found = await orgs.members(ctx, actor, request.match_info["alias"])
    return _json(
        {
            "members": [
                {
                    "id": str(m.user_id),
                    "username": m.username,
                    "email": m.email,
                    "name": m.name,
                    "role": m.role,
                    "joined_at": m.joined_at.isoformat(),
                }
                for m in found
            ]
        }
    )


@routes.delete(BASE + "/{alias}/members/{user}")
@_answer
async def remove_member(request: web.Request) -> web.StreamResponse:
    ctx, actor = await _caller(request)
    alias, user = request.match_info["alias"], request.match_info["user"]
    await orgs.remove_member(ctx, actor, alias, user)
    return web.Response(status=204, headers=NO_STORE)


@routes.post(BASE + "/{alias}/invitations")
@_answer
async def invite(request: web.Request) -> web.StreamResponse:
    ctx, actor = await _caller(request)
    alias = request.match_info["alias"]
    await orgs.require_admin_of(ctx, actor, alias)
    body = await _body(request)
    lang = _text(body, "lang", required=False) or pages.language(request)
    if lang not in pages.theme_of(request).languages:
        raise _Refused(422, "invalid_value", f"no texts in the language {lang[:20]!r}")
    mail = orgs.InvitationMail(
        master=ctx.authority.master,
        theme=pages.theme_of(request),
        lang=lang,
        inviter=actor.display,
    )
    made = await orgs.invite(
        ctx.db,
        ctx.config,
        alias=alias,
        email=_text(body, "email") or "",
        role=_text(body, "role", required=False) or "member",
        client_id=_text(body, "client_id", required=False) or actor.client_id,
        actor=actor.name,
        mail=mail,
        now=ctx.now,
    )
    return _json(
        {
            "email": made.email,
            "role": made.role,
            "client_id": made.client_id,
            "expires_at": made.expires_at.isoformat(),
            "replaced": made.replaced,
            "mail_id": str(made.mail_id),
        },
        201,
    )


@routes.get(BASE + "/{alias}/invitations")
@_answer
async def list_invitations(request: web.Request) -> web.StreamResponse:
    ctx, actor = await _caller(request)
    every = request.query.get("all") in ("1", "true")
    found = await orgs.invitations(ctx, actor, request.match_info["alias"], every=every)
    return _json(
        {
            "invitations": [
                {
                    "id": str(i.id),
                    "email": i.email,
                    "role": i.role,
                    "client_id": i.client_id,
                    "invited_by": i.invited_by,
                    "created_at": i.created_at.isoformat(),
                    "expires_at": i.expires_at.isoformat(),
                    "state": i.state,
                }
                for i in found
            ]
        }
    )


@routes.delete(BASE + "/{alias}/invitations/{email}")
@_answer
async def revoke_invitation(request: web.Request) -> web.StreamResponse:
    ctx, actor = await _caller(request)
    alias, email = request.match_info["alias"], request.match_info["email"]
    await orgs.revoke_invitation(ctx, actor, alias, email)
    return web.Response(status=204, headers=NO_STORE)
