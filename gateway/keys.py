"""Every typed ``web.AppKey`` / ``web.RequestKey`` of the application, in one place."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from gateway.clock import Clock
from gateway.config.holder import ConfigHolder
from gateway.grants.context import Authority
from gateway.grants.revoked import Revocations
from gateway.ratelimit.limiter import RateLimiter

CONFIG = web.AppKey("config", ConfigHolder)
CLOCK = web.AppKey("clock", Clock)  # the application's "now"; tests advance it
DATABASE_URL = web.AppKey("database_url", str)
POOL = web.AppKey("pool", asyncpg.Pool)
AUTHORITY = web.AppKey("authority", Authority)
REVOCATIONS = web.AppKey("revocations", Revocations)
RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)  # its Redis connection: app._rate_limits

REQUEST_ID = web.RequestKey("request_id", str)
