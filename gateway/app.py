"""Composition root: ``create_app`` wires configuration, resources and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway import keys
from gateway.authority import build_master, ensure_signing_keys
from gateway.backchannel.sender import LogoutSender
from gateway.clock import Clock
from gateway.config.holder import ConfigHolder
from gateway.config.loader import Config
from gateway.config.model import is_loopback_host
from gateway.config.watch import watch
from gateway.errors import GatewayError
from gateway.grants.audit_log import AuditLogWriter
from gateway.grants.context import Authority
from gateway.grants.revoked import revocation_listener
from gateway.http.cors import setup_cors
from gateway.http.errors import REQUEST_IDS, RequestIds, gateway_middleware, prepare_response
from gateway.http.metrics import METRICS, Metrics
from gateway.http.pages import setup_themes
from gateway.mail.sender import MailSender
from gateway.outbox import OutboxSender, running
from gateway.passwords import Passwords
from gateway.proxy.exchange import PROXY, ProxyState
from gateway.proxy.forward import proxy
from gateway.proxy.refresh import Refresher
from gateway.proxy.upstreams import Upstreams
from gateway.proxy.user import login_user
from gateway.ratelimit.limiter import RateLimiter
from gateway.ratelimit.shared import SharedBuckets
from gateway.store import sessions as user_store
from gateway.store import users as user_writes
from gateway.store.backchannel import CHANNEL as LOGOUT_CHANNEL
from gateway.store.clients import sync_configured_clients
from gateway.store.errors import UserExistsError
from gateway.store.housekeeping import describe_deleted, housekeep_config
from gateway.store.mail import CHANNEL as MAIL_CHANNEL
from gateway.store.pool import BoundedPool, create_pool
from gateway.web import (
    accounts,
    admin,
    authorize,
    callback,
    demo,
    discovery,
    federation,
    health,
    identifier,
    invitation,
    login,
    logout,
    metrics,
    token,
    tokens,
)
from gateway.web import sessions as account_sessions
from gateway.web.remote_keys import remote_key_cache

log = logging.getLogger(__name__)
KEY_REFRESH_SECONDS = 300.0


async def _database(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.CONFIG].current.gateway.database
    pool = await create_pool(app[keys.DATABASE_URL], settings)
    app[keys.POOL] = pool
    yield
    await pool.close()


async def _rate_limits(app: web.Application) -> AsyncIterator[None]:
    """The rate-limit buckets: in this process, or in Redis when ``redis.url`` is set (its
    connections opened here and closed at shutdown; an unreachable Redis does not stop the
    start, limits fail open until it answers)."""
    settings = app[keys.CONFIG].current.gateway
    server = settings.redis.server
    shared = None
    if server is not None:
        limits = settings.rate_limits
        shared = SharedBuckets(server, prefix=limits.redis_prefix, timeout=limits.redis_timeout)
        await shared.start()

        def on_reload(_old: Config, new: Config) -> None:
            assert shared is not None
            shared.timeout = new.gateway.rate_limits.redis_timeout
            shared.prefix = new.gateway.rate_limits.redis_prefix

        app[keys.CONFIG].subscribe(on_reload)
    limiter = RateLimiter(shared)
    app[keys.RATE_LIMITER] = limiter
    app[METRICS].watch_limiter(limiter)
    try:
        yield
    finally:
        if shared is not None:
            await shared.close()


async def _authority(app: web.Application) -> AsyncIterator[None]:
    holder = app[keys.CONFIG]
    pool = app[keys.POOL]
    secret, master = build_master(holder.current)
    await sync_configured_clients(pool, holder.current.clients)
    ring = await ensure_signing_keys(pool, holder.current, master)
    deadline = holder.current.gateway.database.request_timeout
    async with remote_key_cache(holder, app[keys.CLOCK].time) as remote:
        authority = Authority(
            pool=BoundedPool(pool, deadline, clock=app[keys.CLOCK]),
            passwords=Passwords.configured(holder.current.gateway.passwords),
            master=master,
            keyring=ring,
            remote_keys=remote.get,
            master_secret=secret,
            external_call=remote.post_form,
            remote_keys_at=remote.at,
            discover=remote.discover,
            clock=app[keys.CLOCK],
            limiter=app[keys.RATE_LIMITER],
        )
        app[keys.AUTHORITY] = authority

        def on_reload(_old: Config, new: Config) -> None:
            configured = Passwords.configured(new.gateway.passwords)
            if authority.passwords.cost != configured.cost:
                authority.passwords = configured

        holder.subscribe(on_reload)

        async def refresh_keys() -> None:
            while True:
                await asyncio.sleep(KEY_REFRESH_SECONDS)
                try:
                    authority.keyring = await ensure_signing_keys(pool, holder.current, master)
                except (GatewayError, OSError) as exc:
                    log.warning("cannot reload signing keys: %s", exc)

        task = asyncio.create_task(refresh_keys())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _housekeeping(app: web.Application) -> AsyncIterator[None]:
    """Every ``database.housekeeping_interval`` seconds, delete what is over. Every process runs
    the loop; the advisory lock in ``daemon.housekeep`` lets one of them work at a time."""
    holder = app[keys.CONFIG]
    pool = app[keys.POOL]

    async def run() -> None:
        # The first run comes after a random part of the interval, so that replicas started
        # together do not all wake at once.
        delay_share = random.uniform(0.05, 0.25)  # noqa: S311 - jitter, not a secret
        while (settings := holder.current.gateway.database).housekeeping_interval:
            await asyncio.sleep(settings.housekeeping_interval * delay_share)
            delay_share = 1.0
            try:
                deleted, _ = await housekeep_config(pool, holder.current)
            except (GatewayError, OSError) as exc:
                log.warning("housekeeping failed: %s", exc)
                continue
            if any(deleted.values()):
                log.info("housekeeping deleted %s", describe_deleted(deleted))

    task = asyncio.create_task(run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _audit_log(app: web.Application) -> AsyncIterator[None]:
    """The SIEM output (``audit.log``): every process looks, one writes each event
    (``grants/audit_log.py``)."""
    task = asyncio.create_task(AuditLogWriter(app[keys.CONFIG], app[keys.POOL]).run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _outboxes(app: web.Application) -> AsyncIterator[None]:
    """The outboxes' senders, mail and back-channel logout (every process: the claims' leases
    keep replicas from sending one row twice), woken through one listening connection, with the
    one ``aiohttp.ClientSession`` logout tokens are POSTed through. Last in ``cleanup_ctx``, so
    they stop first, while the pool still works."""
    holder = app[keys.CONFIG]
    database = holder.current.gateway.database
    db = BoundedPool(app[keys.POOL], database.command_timeout, clock=app[keys.CLOCK])
    authority = app[keys.AUTHORITY]
    mail = MailSender(holder, db, authority.master, workdir=Path.cwd())
    async with aiohttp.ClientSession(
        trust_env=False, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
    ) as http:
        logouts = LogoutSender(holder, db, lambda: authority.keyring, app[keys.CLOCK], http)
        senders: dict[str, OutboxSender[Any, Any]] = {MAIL_CHANNEL: mail, LOGOUT_CHANNEL: logouts}
        async with running(senders, app[keys.DATABASE_URL]):
            yield


async def _reload(app: web.Application) -> AsyncIterator[None]:
    """Watch the configuration files; after a reload, store new and changed clients."""
    holder = app[keys.CONFIG]
    pool = app[keys.POOL]
    pending: set[asyncio.Task[None]] = set()

    async def sync(config: Config) -> None:
        try:
            await sync_configured_clients(pool, config.clients)
        except GatewayError as exc:
            log.error("cannot store the reloaded clients: %s", exc)

    def on_reload(_old: Config, new: Config) -> None:
        task = asyncio.get_running_loop().create_task(sync(new))
        pending.add(task)
        task.add_done_callback(pending.discard)

    holder.subscribe(on_reload)
    watcher = asyncio.create_task(watch(holder))
    yield
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


async def _proxy(app: web.Application) -> AsyncIterator[None]:
    holder = app[keys.CONFIG]
    horizon = holder.current.revocation_horizon
    upstreams = Upstreams()
    async with revocation_listener(app[keys.DATABASE_URL], horizon) as revocations:
        state = ProxyState(upstreams, Refresher(), revocations, app[keys.CLOCK])
        app[PROXY] = state
        app[keys.REVOCATIONS] = revocations
        if revocations.feed is not None:
            app[METRICS].watch_feed(revocations.feed)

        def on_reload(_old: Config, new: Config) -> None:
            state.cache.clear()
            # Longer-lived tokens after a reload: remember revocations longer (never shorter).
            revocations.horizon = max(revocations.horizon, new.revocation_horizon)

        holder.subscribe(on_reload)
        try:
            yield
        finally:
            await upstreams.close()


# Everything but the gateway's own paths may be a proxied route (matched at request time, so
# routes can change without a restart).
PROXIED_PATHS = r"/{tail:(?!oauth2/|\.well-known/|login/|admin/v1/|healthz$|readyz$|metrics$).*}"


async def _demo_user(app: web.Application) -> None:
    """The demo's user ``demo`` / ``demo``, only on a loopback listener and only once."""
    config = app[keys.CONFIG].current.gateway
    if not is_loopback_host(config.listen.host):
        log.warning("demo is on, but the demo user is created only on a loopback listener")
        return
    pool = app[keys.POOL]
    if await user_store.user_lookup(pool, "demo") is None:
        passwords = app[keys.AUTHORITY].passwords
        password_hash = await asyncio.to_thread(passwords.hash, "demo")
        with contextlib.suppress(UserExistsError):
            await user_writes.user_add(pool, "demo", password_hash, None, "Demo User")
            log.warning("demo: created the user demo with the password demo")


def create_app(holder: ConfigHolder, *, database_url: str) -> web.Application:
    """The gateway application for the configuration in ``holder`` and the database at
    ``database_url`` (migrated beforehand by ``gateway serve`` or ``gateway migrate``)."""
    config = holder.current.gateway
    app = web.Application(
        middlewares=[gateway_middleware],
        client_max_size=config.limits.body_max,
    )
    app[keys.CONFIG] = holder
    app[keys.DATABASE_URL] = database_url
    app[keys.CLOCK] = Clock()
    setup_cors(app)
    setup_themes(app)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_rate_limits)
    app.cleanup_ctx.append(_authority)
    app.cleanup_ctx.append(_proxy)
    app.cleanup_ctx.append(_reload)
    app.cleanup_ctx.append(_housekeeping)
    app.cleanup_ctx.append(_audit_log)
    app.cleanup_ctx.append(_outboxes)
    app[REQUEST_IDS] = RequestIds()
    app.on_response_prepare.append(prepare_response)
    app[METRICS] = Metrics()
    holder.subscribe(lambda _old, _new: app[METRICS].reloads.labels("accepted").inc())
    holder.subscribe_rejections(lambda: app[METRICS].reloads.labels("rejected").inc())
    for module in (
        health,
        metrics,
        discovery,
        token,
        tokens,
        authorize,
        identifier,
        callback,
        federation,
        logout,
        login,
        admin,
        invitation,
        accounts,
        account_sessions,
    ):
        app.router.add_routes(module.routes)
    if config.demo:
        app.router.add_routes(demo.routes)
        app.on_startup.append(_demo_user)
    app.router.add_get("/login/user", login_user)
    app.router.add_route("*", PROXIED_PATHS, proxy)
    return app
