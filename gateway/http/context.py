"""The grant ``Context`` of a request: this request's configuration snapshot and caller."""

from __future__ import annotations

from aiohttp import hdrs, web

from gateway.clock import Budget
from gateway.grants.context import Context
from gateway.http.forwarded import client_address
from gateway.keys import AUTHORITY, CONFIG


def grant_context(request: web.Request) -> Context:
    config = request.config_dict[CONFIG].current
    authority = request.config_dict[AUTHORITY]
    return Context(
        authority,
        config,
        ip=client_address(request, config.gateway),
        user_agent=request.headers.get(hdrs.USER_AGENT),
        now=authority.clock.now(),
        budget=Budget(config.gateway.database.request_timeout),
    )
