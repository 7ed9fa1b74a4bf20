"""gateway: an OAuth 2.0 / OpenID Connect authorization server and token-handler reverse proxy."""

__version__ = "0.1.0"
