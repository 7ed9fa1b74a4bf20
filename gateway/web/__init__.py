"""Thin aiohttp handlers: parse the request, call the core, render the answer."""
