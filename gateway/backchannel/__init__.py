"""OpenID Connect Back-Channel Logout: the sender of the logout outbox (``sender``)."""
