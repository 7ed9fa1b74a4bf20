"""Pure OAuth 2.0 / OpenID Connect protocol logic: one module per specification.

Nothing here imports aiohttp, asyncpg or aiocache; functions take plain data and return plain data.
"""
