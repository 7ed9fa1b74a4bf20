"""Browser sessions (the ``SID`` cookie): opened after a sign-in, looked up by the authorization
endpoint, ended at sign-out. The handlers read and write the cookie; this module decides."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from gateway.grants.context import Context
from gateway.oauth.errors import InvalidGrantError
from gateway.store import grants as grant_store
from gateway.store import sessions as store
from gateway.store.sessions import Session, SessionInfo

__all__ = [
    "Session",
    "SessionInfo",
    "current_session",
    "end_other_sessions",
    "end_own_session",
    "end_sessions",
    "mark_delivered",
    "open_browser_session",
    "sessions_of",
]

# Why a session ended (auth.session.revoked_reason, the audit's session.revoke detail).
ENDED_BY_USER = "ended by the user"
ENDED_BY_OPERATOR = "ended by an operator"


async def open_browser_session(
    ctx: Context,
    user_id: UUID,
    client_id: str,
    browser_session: UUID | None,
    password_changed_at: datetime | None = None,
) -> Session | None:
    """The browser session after a sign-in: ``browser_session`` (the browser's own one) renewed
    when it is this user's and live (``daemon.session_open`` checks), else a new one. None when
    the account can no longer sign in (locked, or a password changed since
    ``password_changed_at``)."""
    try:
        session_id = await store.session_open(
            ctx.db,
            user_id=user_id,
            client_id=client_id,
            ttl=ctx.settings.tokens.session_ttl,
            ip=ctx.ip,
            user_agent=ctx.user_agent,
            session_id=browser_session,
            password_changed_at=password_changed_at,
        )
    except InvalidGrantError:
        return None
    return await store.session_get(ctx.db, session_id)


async def current_session(ctx: Context, session_id: UUID | None) -> Session | None:
    """The live session a browser's ``SID`` names, or None."""
    return await store.session_get(ctx.db, session_id) if session_id else None


async def end_sessions(ctx: Context, session_ids: Iterable[str], reason: str) -> list[str]:
    """End each session (and every token family in it); the ids that were valid session ids.
    Every process refuses their tokens once the revocation notice arrives."""
    ended = []
    for sid in session_ids:
        try:
            session_id = UUID(sid)
        except ValueError:
            continue
        await store.session_end(
            ctx.db,
            session_id,
            user_id=None,
            reason=reason,
            actor=None,
            ip=ctx.ip,
            user_agent=ctx.user_agent,
        )
        ended.append(sid)
    return ended


async def mark_delivered(ctx: Context, family_id: UUID, generation: int) -> None:
    """A browser presented the access token of this refresh generation: the response that
    carried it arrived (``daemon.family_delivered``), so the refresh token before it is no
    longer a candidate for lost-response recovery."""
    await grant_store.family_delivered(ctx.db, family_id, generation)


async def sessions_of(ctx: Context, user_id: UUID) -> list[SessionInfo]:
    """The user's live sessions, most recently used first (the account page)."""
    return await store.session_list(ctx.db, user_id, include_over=False)


async def end_own_session(ctx: Context, session: Session, target: UUID) -> bool:
    """End one of the signed-in user's own sessions (``daemon.session_end``, which goes through
    ``daemon.session_revoke``); False when it is not a live session of theirs."""
    return await store.session_end(
        ctx.db,
        target,
        user_id=session.user_id,
        reason=ENDED_BY_USER,
        actor=f"user:{session.user_id}",
        ip=ctx.ip,
        user_agent=ctx.user_agent,
    )


async def end_other_sessions(ctx: Context, session: Session, *, keep_this: bool) -> int:
    """End the user's other sessions (``keep_this``) or all of them; how many ended."""
    return await store.session_end_all(
        ctx.db,
        session.user_id,
        keep=session.session_id if keep_this else None,
        reason=ENDED_BY_USER,
        actor=f"user:{session.user_id}",
        ip=ctx.ip,
        user_agent=ctx.user_agent,
    )
