"""The authorization server's grants: one module per grant type, between the thin web handlers and
the store. Each takes validated parameters, makes one ``daemon.*`` call (one transaction) and
mints tokens. Imports no aiohttp."""
