"""Rate limits: token buckets per client (token, revocation, introspection) and per session on
proxied routes (README, "Rate limits").

* ``bucket``: the bucket arithmetic (GCRA) and the in-process buckets: no I/O.
* ``shared``: the same buckets in Redis, shared by every replica, updated atomically by one Lua
  script; limits fail open while Redis is down or slow.
* ``limiter``: what the use cases and the token handler call.

Imports no aiohttp, asyncpg or store: the web faces and the use cases both call it.
"""
