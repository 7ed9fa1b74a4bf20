"""The device of a session, as people recognise it: "Firefox 133 on Linux", from its User-Agent
(the uap-core rules through ``ua-parser``). Only for display; never trusted for anything."""

from __future__ import annotations

from functools import lru_cache

from ua_parser import parse

UNKNOWN = "unknown device"


@lru_cache(maxsize=1024)
def describe_device(user_agent: str | None) -> str:
    """``Chrome 131 on Linux``, ``Mobile Safari 17 on iOS (iPhone)``, ``curl 8``; ``unknown
    device`` for none or one the rules do not know."""
    if not user_agent:
        return UNKNOWN
    found = parse(user_agent[:512])
    browser = found.user_agent
    system = found.os
    device = found.device
    if browser is None or browser.family == "Other":
        name = ""
    else:
        name = f"{browser.family} {browser.major}" if browser.major else browser.family
    if system is not None and system.family != "Other":
        name = f"{name} on {system.family}" if name else system.family
        if device is not None and device.family not in ("Other", "Mac", "Spider"):
            name += f" ({device.family})"
    return name or UNKNOWN
